"""The three papers: recipes, cached experiments, claims per paper."""
