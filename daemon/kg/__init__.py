"""The knowledge graph of models, hardware and benchmark configurations.

- ``graph``: :class:`KnowledgeGraph`, kept current from committed changesets.
- ``sql``: its tables and views in schema ``kg``; ``index``: similarity vectors.
- ``patterns``: speed-ups, scaling, regressions, compatibility.
- ``methods``: the service and ``kg_*`` control methods.
"""
