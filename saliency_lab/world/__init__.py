"""The synthetic scene world: a seeded scene generator with co-occurrence priors (scenes, render, captions),
COCO / POPE writers (coco, pope, dataset), the small LLaVA trained on it (tokenizer, model, train) and its
held-out evaluation (evaluate). See docs/demo.md."""
