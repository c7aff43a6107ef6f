"""WebShop's product search: BM25 over the fields WebShop indexes, 50 hits.

WebShop indexes one document per product, ``title + description + first bullet + option
text`` lowercased (option text: "name: v1, v2, and name2: ..."), with Pyserini/Lucene's
default English analyzer and BM25 (k1=0.9, b=0.4). Here bm25s scores with Lucene's
formula and the same parameters; the analyzer is approximated: word tokens (keeping
"3.1" and "women's" whole), the possessive "'s" dropped, Lucene's English stop words
removed, then the original Porter stemmer. Only documents sharing a term with the query
are hits (as in Lucene); ties keep catalogue order.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import numpy as np

from leap.envs.webshop.catalogue import Catalogue, Product

SEARCH_RETURN_N = 50
PRODUCT_WINDOW = 10

# Lucene's EnglishAnalyzer stop set.
LUCENE_STOP_WORDS = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their then there
    these they this to was will with
    """.split()  # noqa: SIM905
)
_TOKEN = re.compile(r"\w+(?:[.'’]\w+)*")


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer(mode=PorterStemmer.ORIGINAL_ALGORITHM)


@lru_cache(maxsize=262144)
def _stem(word: str) -> str:
    return _stemmer().stem(word, to_lowercase=False)


def analyze(text: str) -> list[str]:
    """Lucene-like English analysis: tokens, possessives off, stop words out, Porter stems."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        tok = re.sub(r"['’]s$", "", tok)
        if tok and tok not in LUCENE_STOP_WORDS:
            out.append(_stem(tok))
    return out


def document_text(p: Product) -> str:
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in p.options.items())
    return " ".join([p.title, p.description, p.first_bullet, option_text]).lower()


class SearchEngine:
    def __init__(self, catalogue: Catalogue) -> None:
        import bm25s

        # bm25s sets its logger to DEBUG on import: let it follow the application's level again.
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        self.asins = [p.asin for p in catalogue.products]
        corpus = [analyze(document_text(p)) for p in catalogue.products]
        self.vocab = {tok for doc in corpus for tok in doc}
        self.bm25 = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        self.bm25.index(corpus, show_progress=False)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[str]:
        """ASINs of the top ``k`` products sharing a term with ``query``, best first."""
        tokens = [t for t in analyze(query) if t in self.vocab]
        if not tokens:
            return []
        scores = np.asarray(self.bm25.get_scores(tokens), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        return [self.asins[i] for i in order[:k] if scores[i] > 0]


def page_of(hits: list[str], page: int) -> list[str]:
    return hits[(page - 1) * PRODUCT_WINDOW : page * PRODUCT_WINDOW]
