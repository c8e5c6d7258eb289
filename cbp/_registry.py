"""One registry of (native, reference) pairs.

It drives the equivalence tests (``tests/test_equivalence.py``): every name
listed here must exist, with the same signature, in both ``cbp._core`` and
``cbp._reference`` (the ``Engine``'s methods included), and each has a
property test comparing the two.  The benchmark (``bench/``) times whole
trainings through the public API, not these pairs.  The native side is None
when the compiled core is not loaded.
"""

from . import _backend, _reference

#: kernel name -> one-line description
NAMES = {
    "dense_forward": "Z := X @ W + b",
    "dense_backward": "dW := X.T @ dZ, db := sum(dZ), dX := dZ @ W.T",
    "dense_forward_feature_major": "ZT := f(W.T @ XT + b), activations feature-major (XT = X.T)",
    "dense_backward_feature_major": "dW := XT @ dT.T, db := sum(dT, 1), dXT := (W @ dT) * f'(ZT)",
    "activation_forward": "A := f(Z)",
    "activation_backward": "dZ := dA * f'(Z)",
    "loss_value": "L(P, Y)",
    "loss_gradient": "dP := dL/dP",
    "output_delta": "dZ := dL/dZ of the output layer (fused pairs)",
    "penalty": "l1 * sum|V| + l2 * sum V^2",
    "add_penalty_gradient": "dV += l1 * sign(V) + 2 * l2 * V",
    "sgd_update": "p -= lr * g",
    "optimizer_update": "one SGD / Adagrad / RMSprop / Adam step",
    "random_bits": "splitmix64 draws of a (seed, stream)",
    "shuffle_order": "an epoch's sample order",
    "dropout_mask": "inverted-dropout mask",
    "Engine": "whole forward / backward / update passes",
}


def pairs():
    """Yield (name, native, reference) for every registered kernel."""
    core = _backend._core
    for name in NAMES:
        yield name, (getattr(core, name) if core is not None else None), getattr(_reference, name)


KERNELS = {name: (native, ref) for name, native, ref in pairs()}
