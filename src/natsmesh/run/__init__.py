"""Floor 6, run: the processes of a mesh on this machine (the nats-server binary, free ports, the supervisor,
and the lifecycle that composes them with the heal watch and fault proxies)."""
