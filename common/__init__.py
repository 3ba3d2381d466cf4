"""gpucensus common: what the agent and the collector both speak. The signed format (JCS, DSSE, the in-toto
statement and its checks, envelope verification), the accounting (catalogue, ECCN classes, TPP, the inventory
predicate), the errors both sides raise, and the helpers both CLIs share. Imports neither `agent` nor `collector`."""

# The one version of the distribution: pyproject.toml reads it ([tool.setuptools.dynamic]) and the agent and the
# collector re-export it.
__version__ = "0.1.0"
