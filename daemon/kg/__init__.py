"""The knowledge graph of models, hardware and benchmark configurations."""
