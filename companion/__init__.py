"""The companion package of the Beyond Backprop course.

One module per chapter, named in the chapter's opening cell (the module's
docstring names the sections that teach it):

====  =====================================================  ==========================================
  ch  chapter                                                module(s)
====  =====================================================  ==========================================
   1  Derivatives and the chain rule                         ``autograd``, ``gradcheck``
   2  Backprop by hand: XOR                                  ``backprop``
   3  The vanishing (and exploding) gradient                 ``diagnostics``
   4  Autoencoders                                           ``autoencoders``
   5  Generative adversarial networks                        ``gan``
   6  The Differentiable Neural Computer                     ``dnc``
   7  The Forward-Forward algorithm                          ``forward_forward``
   8  Evolution strategies                                   ``es``
   9  Feedback alignment and synthetic gradients             ``feedback``
  10  Policy gradients against evolution strategies          ``policy_gradient``
  11  Hebbian learning and STDP                              ``hebbian``
  12  Self-organizing maps and clustering                    ``som``
  13  Bayesian deep learning                                 ``bayes``
====  =====================================================  ==========================================

The floor under them (imports no chapter module): ``data`` (XOR, the digits,
the moved digits), ``training`` (minibatches, progress, ``mlp``, ``History``,
``fit``), ``seeds`` (many seeds as one batched model, ``spread``), ``_checks``
(argument checks), ``measure`` (counts, bytes, CPU time), ``envs`` (batched
CartPole), ``plotting`` (``digit_grid``), ``toc``, ``export``, ``book``.
Coursework, which nothing imports: ``exercises`` (the checkers) and
``coursework`` (student notebooks and the grader).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__version__ = "0.1.0"


def source_hash() -> str:
    """A short hash of the package's source files.

    Chapters print it in their first cell, so an executed chapter records
    which version of the companion code it ran against.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
