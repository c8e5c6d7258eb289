"""cbp's optimizers against their torch.optim namesakes (cbp/optim.py's table).

torch is optional: this module is skipped without it (CI pins torch==2.13.0).
The same float64 network is built in both (nn.Linear holds W transposed), fed
the same data and loss (squared error with mean reduction is MSELoss;
softmax + categorical cross-entropy on labels is cross_entropy on the
logits), and stepped together; parameters, losses and optimizer state must
agree to rtol 1e-10 at every step.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import cbp  # noqa: E402
from cbp import optim  # noqa: E402

# The tensors are tiny: one thread avoids thread-pool spin-up and contention
# with the BLAS threads of the rest of the suite.
torch.set_num_threads(1)

RTOL, ATOL = 1e-10, 1e-13
STEPS = 20

#: name -> (cbp optimizer, torch optimizer over params); decay = 0 throughout
OPTIMIZERS = {
    "sgd": (
        lambda: optim.SGD(0.1),
        lambda p: torch.optim.SGD(
            p, lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, foreach=False
        ),
    ),
    "sgd_momentum": (
        lambda: optim.SGD(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.9, dampening=0.0, nesterov=False, foreach=False
        ),
    ),
    "sgd_nesterov": (
        lambda: optim.SGD(0.05, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.8, dampening=0.0, nesterov=True, foreach=False
        ),
    ),
    "adagrad": (
        lambda: optim.Adagrad(0.1, epsilon=1e-6),
        lambda p: torch.optim.Adagrad(
            p, lr=0.1, lr_decay=0.0, eps=1e-6, initial_accumulator_value=0.0, foreach=False
        ),
    ),
    "rmsprop": (
        lambda: optim.RMSprop(0.01, rho=0.8, epsilon=1e-6),
        lambda p: torch.optim.RMSprop(
            p, lr=0.01, alpha=0.8, eps=1e-6, momentum=0.0, centered=False, foreach=False
        ),
    ),
    "adam": (
        lambda: optim.Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6),
        lambda p: torch.optim.Adam(
            p, lr=0.01, betas=(0.8, 0.95), eps=1e-6, amsgrad=False, weight_decay=0.0, foreach=False
        ),
    ),
}

#: task -> (widths, hidden activation, output activation, loss)
TASKS = {
    "regression": ((3, 6, 2), "tanh", "identity", "squared_error"),
    "classification": ((3, 8, 4), "relu", "softmax", "categorical_crossentropy"),
}


def data(task, n=21, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    if task == "regression":
        return X, rng.standard_normal((n, 2))
    return X, rng.integers(0, 4, n)


def pair(task, backend, cbp_opt=None, seed=5):
    """The cbp network and a torch model with the same parameters."""
    (n_in, hidden, n_out), act, out_act, loss = TASKS[task]
    net = cbp.Network(
        [cbp.Dense(n_in, hidden, act), cbp.Dense(hidden, n_out, out_act)],
        loss=loss,
        backend=backend,
        seed=seed,
        optimizer=cbp_opt,
    )
    first = torch.nn.Linear(n_in, hidden, dtype=torch.float64)
    second = torch.nn.Linear(hidden, n_out, dtype=torch.float64)
    with torch.no_grad():
        for lin, layer in ((first, net.layers[0]), (second, net.layers[1])):
            lin.weight.copy_(torch.from_numpy(layer.weights.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.bias.copy()))
    model = torch.nn.Sequential(
        first, torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU(), second
    )
    return net, model


def torch_loss(task, model, X, y):
    out = model(torch.from_numpy(np.ascontiguousarray(X)))
    if task == "regression":
        return F.mse_loss(out, torch.from_numpy(np.ascontiguousarray(y)), reduction="mean")
    return F.cross_entropy(out, torch.from_numpy(np.ascontiguousarray(y)), reduction="mean")


def torch_step(task, model, opt, X, y):
    opt.zero_grad()
    loss = torch_loss(task, model, X, y)
    loss.backward()
    opt.step()
    return loss.item()


def torch_flat(model):
    """The torch parameters in cbp's layout: W (in, out) then b, layer after layer."""
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    return np.concatenate(
        [
            a
            for lin in lins
            for a in (lin.weight.detach().numpy().T.ravel(), lin.bias.detach().numpy())
        ]
    )


def torch_state(model, opt, key):
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    return np.concatenate(
        [
            opt.state[p][key].numpy().T.ravel() if p.ndim == 2 else opt.state[p][key].numpy()
            for lin in lins
            for p in (lin.weight, lin.bias)
        ]
    )


def assert_close(actual, desired, what=""):
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL, err_msg=what)


def test_torch_version_is_usable():
    assert torch.tensor([1.0], dtype=torch.float64).dtype == torch.float64
    assert hasattr(torch.optim.Adagrad([torch.zeros(1, requires_grad=True)]), "step")


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_full_batch_steps_match_torch(backend, name, task):
    """20 full-batch train_steps with the network's optimizer, step by step."""
    make_cbp, make_torch = OPTIMIZERS[name]
    net, model = pair(task, backend, make_cbp())
    topt = make_torch(model.parameters())
    X, y = data(task)
    assert_close(net.parameters, torch_flat(model), "initial parameters")
    start = net.parameters.copy()
    for step in range(STEPS):
        loss = net.train_step(X, y)
        tloss = torch_step(task, model, topt, X, y)
        assert loss == pytest.approx(tloss, rel=1e-12), f"loss of step {step}"
        assert_close(net.parameters, torch_flat(model), f"parameters after step {step + 1}")
    assert net.optimizer.iterations == STEPS
    assert np.abs(net.parameters - start).max() > 1e-2  # the runs really moved

    # the optimizer state, in torch's terms
    n = net.parameters.size
    state = net.optimizer.state.reshape(-1, n) if net.optimizer.state.size else None
    if name in ("sgd_momentum", "sgd_nesterov"):  # cbp u = -lr * torch's buffer
        assert_close(-state[0] / net.optimizer.lr, torch_state(model, topt, "momentum_buffer"))
    elif name == "adagrad":
        assert_close(state[0], torch_state(model, topt, "sum"))
    elif name == "rmsprop":
        assert_close(state[0], torch_state(model, topt, "square_avg"))
    elif name == "adam":
        assert_close(state[0], torch_state(model, topt, "exp_avg"))
        assert_close(state[1], torch_state(model, topt, "exp_avg_sq"))
    else:
        assert state is None


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fit_full_batch_matches_torch(backend, name):
    """fit(epochs=20) with one full batch an epoch is 20 torch steps; the
    history is torch's losses."""
    task = "classification" if name in ("sgd", "adagrad", "adam") else "regression"
    make_cbp, make_torch = OPTIMIZERS[name]
    net, model = pair(task, backend)
    topt = make_torch(model.parameters())
    X, y = data(task, seed=1)
    hist = net.fit(X, y, epochs=STEPS, optimizer=make_cbp())
    losses = [torch_step(task, model, topt, X, y) for _ in range(STEPS)]
    np.testing.assert_allclose(hist["loss"], losses, rtol=1e-12)
    assert_close(net.parameters, torch_flat(model))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fit_mini_batches_match_torch(backend, name):
    """fit(batch_size=5, shuffle off) on 21 samples: torch steps over the slices
    0-4, 5-9, ..., 20 (a partial last batch), epoch after epoch."""
    task = "regression" if name in ("sgd", "adagrad", "adam") else "classification"
    make_cbp, make_torch = OPTIMIZERS[name]
    net, model = pair(task, backend)
    topt = make_torch(model.parameters())
    X, y = data(task, seed=2)
    epochs = 4
    hist = net.fit(X, y, epochs=epochs, batch_size=5, shuffle=False, optimizer=make_cbp())
    means = []
    for _ in range(epochs):
        losses = [
            torch_step(task, model, topt, X[lo : lo + 5], y[lo : lo + 5]) for lo in range(0, 21, 5)
        ]
        means.append(np.mean(losses))
    np.testing.assert_allclose(hist["loss"], means, rtol=1e-12)
    assert_close(net.parameters, torch_flat(model))
    assert net.optimizer.iterations == epochs * 5


def test_adagrad_decay_is_torch_lr_decay(backend):
    """cbp's lr / (1 + decay * t), t = steps taken, is torch Adagrad's
    lr / (1 + (step - 1) * lr_decay), step counted from 1."""
    decay = 0.3
    net, model = pair("regression", backend, optim.Adagrad(0.1, epsilon=1e-6, decay=decay))
    topt = torch.optim.Adagrad(
        model.parameters(),
        lr=0.1,
        lr_decay=decay,
        eps=1e-6,
        initial_accumulator_value=0.0,
        foreach=False,
    )
    X, y = data("regression", seed=3)
    for step in range(STEPS):
        assert net.optimizer.current_lr == pytest.approx(0.1 / (1 + decay * step), rel=1e-15)
        net.train_step(X, y)
        torch_step("regression", model, topt, X, y)
        assert_close(net.parameters, torch_flat(model), f"step {step + 1}")
    # a different decay really gives different parameters (the check can fail)
    other, _ = pair("regression", backend, optim.Adagrad(0.1, epsilon=1e-6, decay=0.0))
    for _ in range(STEPS):
        other.train_step(X, y)
    assert not np.allclose(other.parameters, net.parameters, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_switched_on_and_off_between_steps_as_torch(backend, nesterov):
    """Momentum turned on for an SGD that trained without it: the velocity
    starts from zero, as torch starts its momentum buffer, and every step
    after matches torch's; turned off, the velocity is dropped (state empty)
    and the steps are plain SGD again, as torch's."""
    net, model = pair("regression", backend, optim.SGD(0.05))
    topt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.0, foreach=False)
    X, y = data("regression")
    for _ in range(4):
        net.train_step(X, y)
        torch_step("regression", model, topt, X, y)
    assert net.optimizer.state.size == 0
    net.optimizer.momentum = 0.9
    net.optimizer.nesterov = nesterov
    topt.param_groups[0].update(momentum=0.9, nesterov=nesterov)
    for step in range(6):
        net.train_step(X, y)
        torch_step("regression", model, topt, X, y)
        assert_close(net.parameters, torch_flat(model), f"momentum step {step + 1}")
    velocity = -net.optimizer.state / net.optimizer.lr
    assert_close(velocity, torch_state(model, topt, "momentum_buffer"))
    net.optimizer.nesterov = False
    net.optimizer.momentum = 0.0
    topt.param_groups[0].update(momentum=0.0, nesterov=False)
    for step in range(3):
        net.train_step(X, y)
        torch_step("regression", model, topt, X, y)
        assert_close(net.parameters, torch_flat(model), f"plain step {step + 1}")
    assert net.optimizer.state.size == 0


def test_sgd_momentum_switched_on_by_a_fit_callback(backend):
    """From a callback, the change applies from the next epoch: the same
    run as two fit calls with the momentum set in between."""
    X, y = data("regression", seed=3)
    a, _ = pair("regression", backend, optim.SGD(0.02))
    a.fit(X, y, epochs=5, batch_size=None)
    a.optimizer.momentum = 0.8
    a.fit(X, y, epochs=5, batch_size=None)

    def switch(epoch, logs):
        if epoch == 5:
            b.optimizer.momentum = 0.8

    b, _ = pair("regression", backend, optim.SGD(0.02))
    b.fit(X, y, epochs=10, batch_size=None, callback=switch, callback_every=5)
    np.testing.assert_array_equal(b.parameters, a.parameters)
    np.testing.assert_array_equal(b.optimizer.state, a.optimizer.state)
    assert b.optimizer.state.size == b.parameters.size
