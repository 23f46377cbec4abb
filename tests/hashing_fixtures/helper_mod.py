"""A user helper module: tests copy this source to a temp dir, edit it, and import it."""

from __future__ import annotations

import json


def double(x):
    return x * 2


def twice_double(x):
    return double(double(x))


class Scaler:
    """Scales by ``k``."""

    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return double(x) * self.k


def to_json(x):
    return json.dumps(x)
