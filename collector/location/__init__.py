"""Location evidence: landmark-measured round-trip times that bound where a node can be (issue 12).

`geometry` (pure: distances, discs, country borders), `countries` (the vendored border data), `bound` (round-trip
time to distance), `evidence` (checking signed measurements), `assess` (site against the discs: findings and a
status), `ingest` (the pipeline step and what it stores), `landmark_server` (the timing service).
"""
