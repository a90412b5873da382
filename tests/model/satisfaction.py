"""Twelve texts whose two labels cut across topic, so that the frozen MiniLM embeddings do not
already separate them: what fine-tuning the body has to learn."""
import numpy as np

TEXTS = [
    "The new phone arrived quickly and works perfectly.",      # satisfied
    "This kettle boils water fast, I love it.",
    "Great hotel, friendly staff and a spotless room.",
    "The concert was wonderful from start to finish.",
    "My laptop battery lasts all day, very happy.",
    "The restaurant served the best pasta I have had.",
    "The new phone arrived broken and will not turn on.",      # unsatisfied
    "This kettle leaks and the handle got too hot to touch.",
    "Awful hotel, rude staff and a dirty room.",
    "The concert was loud noise and we left early.",
    "My laptop battery dies within an hour, very annoyed.",
    "The restaurant served cold pasta and overcharged us.",
]
GOLD = np.array([0] * 6 + [1] * 6)


def same_minus_different_cosine(emb: np.ndarray) -> float:
    """Mean cosine of same-label pairs minus that of different-label pairs."""
    sim = emb @ emb.T
    same = GOLD[:, None] == GOLD[None, :]
    return float(sim[same & ~np.eye(len(GOLD), dtype=bool)].mean() - sim[~same].mean())
