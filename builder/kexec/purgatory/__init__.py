"""kdump-build's own purgatory: sources, the prebuilt objects, and their loader.

`loader` relocates an ET_REL object to a load address and patches symbols;
`regions` computes what the purgatory verifies; one module per architecture
(named after it) ties them to that architecture's shipped object.
"""
