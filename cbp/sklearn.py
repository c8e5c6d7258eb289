"""Drop-in scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn 1.9's parameters and give its numbers: the same
initial weights, shuffles, validation split, losses, schedules and updates,
so ``coefs_``, ``intercepts_``, ``loss_curve_`` and ``validation_scores_``
agree with ``sklearn.neural_network``'s to rounding.  The fitted model's
weights live in ``network_``, a :class:`cbp.Network`: ``coefs_[i]`` and
``intercepts_[i]`` are views of its layer ``i``'s ``weights`` and ``bias``.

Python runs once per epoch (shuffle order from scikit-learn's random stream,
early stopping, learning-rate schedules, the loss curve); the mini-batches
of an epoch are one call of ``network_``'s ``Engine.sklearn_epoch`` (native:
one C call with the GIL released; ``backend="numpy"``: its NumPy twin), and
each lbfgs evaluation one ``Engine.sklearn_loss_grad``.  An epoch whose loss
or update stops being finite raises scikit-learn's ValueError ("non-finite
parameter weights") with the parameters of the batch before it (scikit-learn
trains on with NaN and raises at the end).  Training is in float64 whatever
the input dtype.

Requires scikit-learn: ``pip install "cbp[sklearn]"``.
"""

import warnings
from numbers import Integral, Real

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised without scikit-learn
    raise ImportError(
        'cbp.MLPClassifier and cbp.MLPRegressor need scikit-learn>=1.9: pip install "cbp[sklearn]"'
    ) from exc

from . import _codes
from . import _sklearn_epoch as E
from ._errors import DivergenceError
from ._sklearn_inputs import binarize_integer_labels, validate_params_once
from .network import Dense, Network

# scikit-learn's loss name -> the engine's code (Engine.sklearn_epoch)
_SK_LOSS_CODES = {
    "squared_error": _codes.LOSS_SK_SQUARED,
    "log_loss": _codes.LOSS_SK_LOG,
    "binary_log_loss": _codes.LOSS_SK_BINARY_LOG,
    "poisson": _codes.LOSS_SK_POISSON,
}

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")

# cbp activation and loss of network_ for each scikit-learn output activation
_NETWORK_LOSS = {
    "softmax": "categorical_crossentropy",
    "logistic": "binary_crossentropy",
    "identity": "half_squared_error",
    "exp": "half_squared_error",
}


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share (scikit-learn's BaseMultilayerPerceptron)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"native", "numpy"}), None],
    }

    # -- parameters -------------------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        """BaseEstimator's, introspected once per class (the signature of
        __init__ does not change)."""
        names = cls.__dict__.get("_param_names")
        if names is None:
            names = tuple(super()._get_param_names())
            cls._param_names = names
        return list(names)

    def _validate_params(self):
        """BaseEstimator's validation of the parameters, once per class for a
        set of simple types (``cbp._sklearn_inputs.validate_params_once``)."""
        validate_params_once(self)

    # -- network_ and the views coefs_ / intercepts_ --------------------------
    def _build_network(self, coefs, intercepts):
        """network_ holding coefs and intercepts; coefs_ and intercepts_ become its views."""
        layers = []
        last = len(coefs) - 1
        for i, (W, b) in enumerate(zip(coefs, intercepts)):
            act = self.activation if i < last else self.out_activation_
            if act == "exp":  # the link of the Poisson loss: network_ gives log-means
                act = "identity"
            layers.append(Dense(W.shape[0], W.shape[1], act, weights=W, bias=b))
        self.network_ = Network(
            layers, loss=_NETWORK_LOSS[self.out_activation_], backend=self.backend
        )
        self._bind_views()

    def _bind_views(self):
        self.coefs_ = [layer.weights for layer in self.network_.layers]
        self.intercepts_ = [layer.bias for layer in self.network_.layers]

    def _set_weights(self, coefs, intercepts):
        """Copy values into the network's buffer (coefs_/intercepts_ see them)."""
        for layer, W, b in zip(self.network_.layers, coefs, intercepts):
            layer.weights[...] = W
            layer.bias[...] = b

    def __setstate__(self, state):
        super().__setstate__(state)
        if "network_" in self.__dict__:  # a pickle stores views as copies: re-bind
            self._bind_views()

    # -- initialization, as scikit-learn's _initialize / _init_coef ------------
    def _initialize(self, y, layer_units):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not isinstance(self, ClassifierMixin):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        coefs, intercepts = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        self._build_network(coefs, intercepts)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    @property
    def _loss_name(self):
        if self.out_activation_ == "softmax":
            return "log_loss"
        if self.out_activation_ == "logistic":
            return "binary_log_loss"
        return self.loss

    # -- fit ------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if scipy.sparse.issparse(X):
            X = X.toarray()
        X = np.ascontiguousarray(X, dtype=np.float64)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        sample_weight = self._weigh_classes(y, sample_weight)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        Y = np.ascontiguousarray(y, dtype=np.float64)
        self.n_outputs_ = Y.shape[1]
        layer_units = [n_features] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, Y, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, Y, sample_weight, layer_units)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _weigh_classes(self, y, sample_weight):
        """The weights of the rows: sample_weight, with the classifier's class_weight."""
        return sample_weight

    def _fit_lbfgs(self, X, Y, sw, layer_units):
        shapes = list(zip(layer_units[:-1], layer_units[1:]))
        sizes = [a * b for a, b in shapes] + [b for _, b in shapes]
        bounds = np.cumsum([0] + sizes)
        n = len(shapes)

        def unpack(x):
            coefs = [x[bounds[i] : bounds[i + 1]].reshape(shapes[i]) for i in range(n)]
            intercepts = [x[bounds[n + i] : bounds[n + i + 1]] for i in range(n)]
            return coefs, intercepts

        engine = self.network_._engine
        grads = self.network_._gradients
        params = self.network_._parameters
        code = _SK_LOSS_CODES[self._loss_name]
        # scikit-learn's packing [W_0, ..., W_L-1, b_0, ..., b_L-1] of the
        # network's buffer [W_0, b_0, W_1, b_1, ...]: one index permutation
        meta, _ = self.network_._layer_table()
        w_off = meta[:, _codes.LAYER_WEIGHT_OFFSET]
        b_off = meta[:, _codes.LAYER_BIAS_OFFSET]
        perm = np.concatenate(
            [np.arange(w_off[i], w_off[i] + a * b) for i, (a, b) in enumerate(shapes)]
            + [np.arange(b_off[i], b_off[i] + b) for i, (a, b) in enumerate(shapes)]
        )

        def loss_grad(x):
            params[perm] = x
            value = engine.sklearn_loss_grad(X, Y, sw, code, self.alpha)
            return value, grads[perm]

        x0 = np.hstack([c.ravel() for c in self.coefs_ + self.intercepts_])
        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        res = scipy.optimize.minimize(
            loss_grad,
            x0,
            method="L-BFGS-B",
            jac=True,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = res.fun
        self._set_weights(*unpack(res.x))

    def _fit_stochastic(self, X, Y, sample_weight, incremental):
        params = self.coefs_ + self.intercepts_
        if not incremental or not hasattr(self, "_optimizer"):
            if self.solver == "sgd":
                self._optimizer = E.SGD(
                    params,
                    self.learning_rate_init,
                    self.learning_rate,
                    self.momentum,
                    self.nesterovs_momentum,
                    self.power_t,
                )
            else:
                self._optimizer = E.Adam(
                    params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon
                )
        opt = self._optimizer
        engine = self.network_._engine
        code = _SK_LOSS_CODES[self._loss_name]
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            should_stratify = isinstance(self, ClassifierMixin) and self.n_outputs_ == 1
            stratify = Y.astype(bool) if should_stratify else None
            if sample_weight is None:
                X_train, X_val, Y_train, Y_val = train_test_split(
                    X,
                    Y,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
                sw_train = sw_val = None
            else:
                X_train, X_val, Y_train, Y_val, sw_train, sw_val = train_test_split(
                    X,
                    Y,
                    sample_weight,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            y_val = self._targets_of(Y_val)
        else:
            X_train, Y_train, sw_train = X, Y, sample_weight
            X_val = y_val = sw_val = None
        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped",
                    stacklevel=2,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                order = None
                if self.shuffle:
                    # sklearn.utils.shuffle(sample_idx, random_state=rs), which
                    # is sample_idx[p] for p = arange(n) shuffled by rs: the
                    # shuffle's swaps depend on its draws only, so shuffling
                    # sample_idx in place gives the same order
                    self._random_state.shuffle(sample_idx)
                    order = sample_idx
                opt.hyper[_codes.HYPER_LEARNING_RATE] = opt.learning_rate
                try:
                    total, opt.t = engine.sklearn_epoch(
                        X_train,
                        Y_train,
                        sw_train,
                        order,
                        batch_size,
                        code,
                        self.alpha,
                        opt.kind,
                        opt.hyper,
                        opt.state,
                        opt.t,
                    )
                except DivergenceError as exc:
                    # scikit-learn trains on with NaN and raises this ValueError
                    # at the end; cbp stops at the first non-finite batch, with
                    # the parameters of the batch before it.
                    raise ValueError(
                        "Solver produced non-finite parameter weights. The input data may"
                        " contain large values and need to be preprocessed."
                        f" ({exc}, in epoch {self.n_iter_ + 1})"
                    ) from exc
                self.n_iter_ += 1
                self.loss_ = total / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_:d}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                self._optimizer.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = (
                            "Validation score did not improve more than "
                            f"tol={self.tol:f} for {self.n_iter_no_change:d} consecutive epochs."
                        )
                    else:
                        msg = (
                            f"Training loss did not improve more than tol={self.tol:f}"
                            f" for {self.n_iter_no_change:d} consecutive epochs."
                        )
                    if self._optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter:d}) "
                        "reached and the optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=2,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=2)
        if early_stopping:
            self._set_weights(self._best_coefs, self._best_intercepts)

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            score = self._score_numpy(X, y, sample_weight)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                f" optimizers. {self.solver} is not stochastic."
            )
        return True

    # -- prediction -----------------------------------------------------------
    def _output(self, X, check_input=True):
        """The output layer's values for X (probabilities, or predictions)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if scipy.sparse.issparse(X):
            X = X.toarray()
        X = np.ascontiguousarray(X, dtype=np.float64)
        try:
            out = self.network_.predict(X)
        except (FloatingPointError, RuntimeError):
            # FloatingPointError: an overflow, whose non-finite values scikit-learn
            # returns.  RuntimeError: another thread is using network_ (a Network
            # serves one thread at a time); a fitted estimator predicts from any.
            return E.forward(
                self.coefs_, self.intercepts_, X, self.activation, self.out_activation_
            )[-1]
        if self.out_activation_ == "exp":
            np.exp(out, out=out)
        return out

    def _score_numpy(self, X, y, sample_weight):
        """scikit-learn's validation score: from the NumPy forward pass, NaN if not finite."""
        out = E.forward(self.coefs_, self.intercepts_, X, self.activation, self.out_activation_)[-1]
        y_pred = self._from_output(out)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn 1.9's, trained by cbp.

    Parameters are scikit-learn's (see ``sklearn.neural_network.MLPClassifier``),
    then two of cbp's:

    class_weight : "balanced", dict or None, default=None
        Weights of the classes, multiplied into ``sample_weight`` (as
        ``sklearn.utils.class_weight.compute_sample_weight`` gives them).
        Not for multilabel targets.
    backend : {"native", "numpy"} or None, default=None
        The backend of ``network_`` (see :class:`cbp.Network`).

    Attributes
    ----------
    scikit-learn's (``classes_``, ``coefs_``, ``intercepts_``, ``loss_``,
    ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``, ``n_features_in_``,
    ``feature_names_in_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``)
    and ``network_``, the :class:`cbp.Network` whose layers' ``weights`` and
    ``bias`` are ``coefs_`` and ``intercepts_``.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        class_weight=None,
        backend=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.backend = backend

    loss = "log_loss"  # scikit-learn's MLPClassifier has it as a fixed attribute

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            fitted = binarize_integer_labels(y)
            if fitted is not None:
                self._label_binarizer, Y = fitted
                self.classes_ = self._label_binarizer.classes_
                return X, Y
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y).astype(bool)

    def _weigh_classes(self, y, sample_weight):
        """sample_weight times the weight of each row's class (y: the binarized labels)."""
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets")
        cw = compute_sample_weight(self.class_weight, self._label_binarizer.inverse_transform(y))
        return cw if sample_weight is None else sample_weight * cw

    def _targets_of(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _from_output(self, out):
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    _score_function = staticmethod(accuracy_score)

    def predict(self, X):
        """The predicted classes: shape (n_samples,), or (n_samples, n_classes) if multilabel."""
        check_is_fitted(self)
        return self._from_output(self._output(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all the labels) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        y_pred = self._output(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn 1.9's, trained by cbp.

    Parameters are scikit-learn's (see ``sklearn.neural_network.MLPRegressor``),
    then cbp's ``backend`` (see :class:`MLPClassifier`).  With
    ``loss="poisson"`` the output is exp of the last layer; ``network_``
    (identity output) gives its logarithm.  ``partial_fit`` exists for the
    stochastic solvers only, as for the classifier (scikit-learn's regressor
    also lists it with ``solver="lbfgs"``).
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _targets_of(self, Y):
        return Y

    def _from_output(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    _score_function = staticmethod(r2_score)

    def predict(self, X):
        """The predictions: shape (n_samples,), or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._from_output(self._output(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
