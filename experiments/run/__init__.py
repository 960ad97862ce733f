"""Running methods on a task: the runner that scores every method on one eval set and writes the
run folder, the registry of every method by name (it imports rag and finetune by string), what a
method that ran out of memory leaves behind, and chatting with a model by hand.

This folder sits above experiments/report (the runner writes report.md and report.html),
experiments/data, finetune and rag, and below experiments/export, which reads a run back."""
