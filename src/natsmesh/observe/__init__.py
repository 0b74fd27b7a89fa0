"""Floor 3, observe: reaching the mesh and reading it (connections, typed server replies, system requests,
readiness, lag, stream listings, reports as data). Reads only; changes nothing."""
