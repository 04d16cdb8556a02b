"""MEMIT math, model loading, recall and perplexity: pure functions over a model, no store I/O."""
