"""Agreement statistics for practice sessions (pure)."""

from __future__ import annotations

from typing import Sequence


def confusion_matrix(key: Sequence[int], answer: Sequence[int], k: int) -> list[list[int]]:
    """Rows: the key's category; columns: the answer's category (0..k-1)."""
    m = [[0] * k for _ in range(k)]
    for a, b in zip(key, answer):
        m[a][b] += 1
    return m


def linear_weighted_kappa(key: Sequence[int], answer: Sequence[int], k: int) -> float | None:
    """Cohen's kappa with linear weights w_ij = 1 - |i - j| / (k - 1).

    None when it is undefined (no pairs, or chance agreement is already perfect while observed
    agreement is not measurable, i.e. every pair falls in one category for both raters).
    """
    n = len(key)
    if n == 0 or n != len(answer) or k < 2:
        return None
    m = confusion_matrix(key, answer, k)
    row = [sum(m[i]) / n for i in range(k)]
    col = [sum(m[i][j] for i in range(k)) / n for j in range(k)]

    def w(i: int, j: int) -> float:
        return 1 - abs(i - j) / (k - 1)

    po = sum(w(i, j) * m[i][j] / n for i in range(k) for j in range(k))
    pe = sum(w(i, j) * row[i] * col[j] for i in range(k) for j in range(k))
    if pe >= 1:
        return None
    return (po - pe) / (1 - pe)
