"""Evaluation: the paper's protocol (F1, EM, MBE judge on its test set) and more; resumable runs,
protocol cards, reports, re-scoring of rollouts (ours and the original's), run comparison."""
