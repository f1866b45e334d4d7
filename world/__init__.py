"""The offline benchmark world: procedural images of named object classes, with test domains
that mirror the ImageNet OOD suite (v2, sketch, rendition, corruption, hard)."""
