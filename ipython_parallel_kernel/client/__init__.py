"""The client: the reactor thread, RemoteKernel and (later) InteractiveCluster."""
