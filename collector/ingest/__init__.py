"""The ingest pipeline, one module per step: signature -> chain -> recompute -> crossnode -> store -> ack.

Each step is a pure function of the envelope and of facts the pipeline looked up in the store beforehand;
`pipeline.py` is the one module that talks to the store.
"""
