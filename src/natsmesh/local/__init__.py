"""Floor 2, local: what natsmesh keeps on this machine (the data dir's layout, the supervisor's state, secrets,
certificates, records of a running mesh, the validated-spec cache, rendered folders)."""
