"""Evaluation: scoring responses against gold answers, held-out accuracy per stage."""

from itool_ray.eval.scoring import EvalSummary, Scored, gold_ground_truth, score_response, summarize

__all__ = ["EvalSummary", "Scored", "gold_ground_truth", "score_response", "summarize"]
