"""Batched backfills: the keyset executor and the scripts emitted for teams that run their own."""
