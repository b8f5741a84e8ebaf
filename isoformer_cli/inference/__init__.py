"""Orchestration: commands call one function here, which wires io, triples, model and outputs."""
