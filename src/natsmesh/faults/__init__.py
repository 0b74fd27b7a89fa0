"""Floor 5, faults: breaking a local mesh on purpose and checking what survived (fault proxies on leaf links,
chaos, the loss checker). Beside `natsmesh.reconcile`; neither imports the other."""
