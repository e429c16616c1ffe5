r"""GNN optimisation study (Xu et al., ICML 2021): ``--config=configs/gnn_optimization.py:<variant>``.

Variants:
  sbm    default: a citation-like stochastic block model (800 nodes, 4 classes, 48-d Gaussian class
         features, 8 labelled nodes per class, average degree ~4, homophily ~0.75) with GCN
         aggregation. Two comparisons, each with one step size for every model in it:
           study      linear GNNs, skip vs no skip x depth H in {1, 2, 4, 8} x true vs random labels;
                      eta = 5e-5 for 20k steps: the largest step tried (1e-4, 5e-5) that keeps every
                      model monotone over the run (deep no-skip models sharpen as they fit and turn
                      unstable at larger steps or longer runs).
           nonlinear  linear vs ReLU, skip vs no skip, H in {2, 4}: eta = 5e-4 for 2k steps.
         Three seeds (init and random labels); about 5 minutes on 2 CPU cores.
  cora   the same study on Planetoid Cora (needs ``--config.data.root=<dir with ind.cora.*>``);
         features are projected on their top 256 singular directions (``data.pca_dim``) so that
         widths >= m_0 stay affordable; ``--config.data.pca_dim=0`` keeps all 1433 (then set
         ``--config.width=1433`` for lambda_min(Bbar^T Bbar) > 0). Step sizes are untested on Cora.
  tiny   a seconds-long smoke run (tests run every binary's tiny variant).

Any field can be overridden: ``--config.study.depths='(1,2,3)' --config.study.learning_rate=1e-4``.
Models: linear | linear_skip | relu | relu_skip (the binary maps them to activation and skip).
Labels: true (one-hot classes of the labelled nodes) | random (uniform classes drawn per seed).
"""
import ml_collections
from ml_collections import config_dict


def comparison(**fields) -> ml_collections.ConfigDict:
    """One comparison: every (aggregation, depth, model, labels, seed) in it trains with the same
    step size and number of steps."""
    group = ml_collections.ConfigDict(dict(
        depths=(1, 2, 4, 8), models=("linear", "linear_skip"), label_modes=("true", "random"),
        learning_rate=5e-5, num_steps=20_000))
    group.update(fields)
    return group


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "gnn_optimization"
    config.seeds = (0, 1, 2)  # init and random-label seeds; the graph has its own data.seed
    config.aggregations = ("gcn",)  # gcn: D~^-1/2 (A+I) D~^-1/2; gin: A + (1+eps) I
    config.gin_eps = 0.0
    config.width = 48  # m_1 = ... = m_H; >= m_0 so that lambda_min(Bbar^T Bbar) can be > 0
    config.init = "orthogonal"  # orthogonal | gaussian (jaxmodels.projects.gnn_optimization.linear_gnn.init_params)
    config.init_scale = 1.0
    config.dtype = "float32"  # float64 needs x64; worth it when L* > 0 (fewer features than labels)
    config.feature_scale = 3.0  # features rescaled so that sigma_max(X_{*,I}) = feature_scale
    config.diagnostics_every = 50  # lambda_min(Bbar^T Bbar) every this many steps
    config.log_every_steps = 200  # metrics.jsonl / TensorBoard resolution
    config.rate_windows = ml_collections.ConfigDict(dict(early=(0.0, 0.1), late=(0.5, 1.0)))  # fractions of T
    config.data = ml_collections.ConfigDict(dict(
        source="sbm", root=config_dict.placeholder(str), name="cora", pca_dim=0, seed=0,
        num_nodes=800, num_classes=4, feature_dim=48, p_in=0.015, p_out=0.0017,
        feature_kind="gaussian", signal=1.0, noise=2.0, labelled_per_class=8))
    config.study = comparison()
    config.nonlinear = comparison(depths=(2, 4), models=("linear", "linear_skip", "relu", "relu_skip"),
                                  learning_rate=5e-4, num_steps=2_000)
    return config


def sbm() -> ml_collections.ConfigDict:
    return base_config()


def cora() -> ml_collections.ConfigDict:
    config = base_config()
    config.data.update(dict(source="planetoid", name="cora", pca_dim=256))
    config.width = 256
    config.study.learning_rate = 2e-5
    config.nonlinear.learning_rate = 2e-4
    return config


def tiny() -> ml_collections.ConfigDict:
    config = base_config()
    config.data.update(dict(num_nodes=90, num_classes=3, feature_dim=12, p_in=0.1, p_out=0.01,
                            labelled_per_class=3))
    config.width = 12
    config.diagnostics_every = 5
    config.log_every_steps = 10
    config.seeds = (0,)
    config.study = comparison(depths=(1, 2), learning_rate=1e-3, num_steps=60)
    config.nonlinear = comparison(depths=(1,), models=("linear", "relu_skip"), label_modes=("true",),
                                  learning_rate=1e-3, num_steps=30)
    return config


VARIANTS = {"sbm": sbm, "cora": cora, "tiny": tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    name = arg or "sbm"
    if name not in VARIANTS:
        raise ValueError(f"configs/gnn_optimization.py:{name}: unknown variant; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]()
