//! Property tests (no panic, bounded memory) over the three parsers with arbitrary and mutated-real input.
