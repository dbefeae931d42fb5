"""`typo`: character-level noise in a seeded fraction of the words, applied before tokenization.

Each word of at least two letters is changed with probability `attack_rate` by one of four edits,
chosen uniformly: swap two adjacent letters, drop a letter, insert a letter, or substitute a
QWERTY keyboard neighbour (the noise of Belinkov & Bisk, 2018, and Pruthi et al., 2019). No
external resources; the random stream is seeded per example, so results are deterministic and do
not depend on batching.
"""

from __future__ import annotations

import random
import re
import string

from mtadv.attacks.base import ATTACKS, Attack

ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {
    ch: "".join(
        ROWS[r2][c2]
        for r2 in (r - 1, r, r + 1)
        for c2 in (c - 1, c, c + 1)
        if 0 <= r2 < 3 and 0 <= c2 < len(ROWS[r2]) and (r2, c2) != (r, c)
    )
    for r, row in enumerate(ROWS)
    for c, ch in enumerate(row)
}
WORD = re.compile(r"[A-Za-z]{2,}")


def swap(w: str, rng: random.Random) -> str:
    i = rng.randrange(len(w) - 1)
    return w[:i] + w[i + 1] + w[i] + w[i + 2 :]


def drop(w: str, rng: random.Random) -> str:
    i = rng.randrange(len(w))
    return w[:i] + w[i + 1 :]


def insert(w: str, rng: random.Random) -> str:
    i = rng.randrange(len(w) + 1)
    return w[:i] + rng.choice(string.ascii_lowercase) + w[i:]


def substitute(w: str, rng: random.Random) -> str:
    i = rng.randrange(len(w))
    near = NEIGHBOURS.get(w[i].lower(), string.ascii_lowercase)
    ch = rng.choice(near)
    return w[:i] + (ch.upper() if w[i].isupper() else ch) + w[i + 1 :]


EDITS = (swap, drop, insert, substitute)


@ATTACKS.register("typo")
class TypoAttack(Attack):
    name = "typo"
    kind = "text"
    settings_used = ("attack_rate", "attack_seed")

    def perturb_text(self, text: str, rng: random.Random) -> str:
        rate = self.cfg.attack_rate

        def edit(match: re.Match) -> str:
            word = match.group(0)
            return rng.choice(EDITS)(word, rng) if rng.random() < rate else word

        return WORD.sub(edit, text) if rate > 0 else text
