"""Korean sentence-similarity pipeline: download -> preprocess -> tokenize -> train -> evaluate."""
