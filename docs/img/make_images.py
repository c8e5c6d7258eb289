"""Regenerate the images of docs/cli.md: python docs/img/make_images.py (needs cbp[plot])."""

import pathlib
import types

import cbp
import cbp.plot

HERE = pathlib.Path(__file__).resolve().parent


def main():
    # training curves of the spiral, half of its points held out for validation
    X, y = cbp.datasets.spiral_data(100, 3, seed=0)
    net = cbp.Network(
        [cbp.Dense(2, 64, "relu"), cbp.Dense(64, 3, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    hist = net.fit(
        X[::2],
        y[::2],
        epochs=1500,
        batch_size=32,
        shuffle=True,
        optimizer=cbp.optim.Adam(lr=0.005),
        validation_data=(X[1::2], y[1::2]),
    )
    cbp.plot.history(hist, title="spiral, 2-64-3 ReLU, Adam lr 0.005").savefig(
        HERE / "history.png", dpi=80
    )
    # decision regions of a network trained on all the points
    net = cbp.Network(
        [cbp.Dense(2, 64, "relu"), cbp.Dense(64, 64, "relu"), cbp.Dense(64, 3, "softmax")],
        loss="categorical_crossentropy",
        seed=0,
    )
    net.fit(X, y, epochs=3000, batch_size=64, shuffle=True, optimizer=cbp.optim.Adam(lr=0.005))
    cbp.plot.decision_boundary(net, X, y, resolution=250).savefig(
        HERE / "decision_boundary.png", dpi=80
    )

    # seed 001 after one forward and backward pass, with its gradients
    hidden = cbp.Dense(2, 2, "relu", weights=[[1.0, 0.5], [1.0, -0.5]], bias=[0.5, 0.0])
    output = cbp.Dense(2, 1, "relu", weights=[[1.0], [1.0]], bias=[0.5])
    seed = cbp.Network([hidden, output], loss="squared_error")
    seed.forward([[1.0, 0.0]])
    seed.backward([2.0])
    trace = types.SimpleNamespace(
        layers=[
            types.SimpleNamespace(dweights=layer.dweights.copy(), dbias=layer.dbias.copy())
            for layer in seed.layers
        ]
    )
    cbp.plot.network(seed, trace=trace).savefig(HERE / "network.png", dpi=100)


if __name__ == "__main__":
    main()
