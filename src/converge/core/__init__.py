"""Pure building blocks shared by every layer: ids, kinds, errors, canonical JSON, fingerprints, clocks."""
