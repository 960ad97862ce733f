"""A metric of your own for support-intents (docs/running.md, "Your own metric"): partial credit
for a ticket sent to the wrong queue of the right team, which re-routes it in minutes, where a
ticket sent to another team waits a day.

task-routing.yaml names it: `metrics: [accuracy, python:routing.py:routing_credit]`.
"""

TEAMS = {
    "billing": "payments",
    "shipping": "orders",
    "returns": "orders",
    "order_change": "orders",
    "technical": "product",
    "product_question": "product",
    "account": "accounts",
    "feedback": "care",
}


def routing_credit(prediction: str, reference: str, row: dict) -> float:
    """1 for the right queue, 0.5 for another queue of the same team, 0 otherwise."""
    predicted, right = prediction.strip(), reference.strip()
    if predicted == right:
        return 1.0
    return 0.5 if TEAMS.get(predicted, predicted) == TEAMS[right] else 0.0
