"""Floor 1, render: the model as text and documents (server configs, stream configs, policy, lineage). Pure."""
