"""Floor 5, reconcile: making the mesh match the spec (pure plans and their application, the catalog, policy
sync, the heal step). Beside `natsmesh.faults`; neither imports the other."""
