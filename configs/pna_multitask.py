r"""PNA multitask benchmark configs: ``--config=configs/pna_multitask.py:<variant>``.

The architecture and recipe of the official ``multitask_benchmark`` runs (Corso et al., NeurIPS 2020;
README command ``--variable --fixed --gru --lr=0.003 --weight_decay=1e-6 --dropout=0.0 --epochs=10000
--patience=1000 --variable_conv_layers=N/2 --fc_layers=3 --hidden=16 --towers=4``): a first
convolution, one shared middle convolution repeated to N/2 convolutions, a GRU after each,
3-layer node MLP and Set2Set + 3-layer graph MLP, hidden 16, Adam lr 3e-3 with L2 weight decay
1e-6, up to 10,000 epochs with early stopping after 1,000 epochs without validation improvement.

Variants (the paper's seven models, and a smoke test):
  pna             mean/max/min/std x identity/amplification/attenuation, 4 towers (default)
  pna_no_scalers  the same aggregators, identity scaler only
  mpnn_sum        PNA layer with a single sum aggregator (the official mpnn.py)
  mpnn_max        ... with max
  gcn, gat, gin   the baselines (GAT: 4 heads, LeakyReLU 0.2; GIN: 2-layer MLP, learnable eps)
  tiny            a few graphs per batch, 3 epochs (tests)
Override anything, e.g. ``--config.num_epochs=300 --config.data.extrapolation=True``.
"""
import ml_collections

VARIANTS = ("pna", "pna_no_scalers", "mpnn_sum", "mpnn_max", "gcn", "gat", "gin", "tiny")


def conv_options(**overrides) -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict(dict(
        aggregators=("mean", "max", "min", "std"), scalers=("identity", "amplification", "attenuation"),
        towers=4, delta=-1.0,  # -1: computed from the training set's degrees
        aggregation="sum", pre_layers=1, post_layers=1, mixing="leaky_relu",
        heads=4, alpha=0.2, fc_layers=2))
    options.update(overrides)
    return options


def get_config(variant: str = "pna") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/pna_multitask.py: unknown variant {variant!r}; choose from {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.experiment = "pna_multitask"
    config.name = variant
    config.seed = 42  # the official train.py default
    config.data = ml_collections.ConfigDict(dict(
        cache_dir="", seed=1234, connectivity="official",
        extrapolation=False, shuffle_batches=False, graphs_per_batch=None))
    config.model = ml_collections.ConfigDict(dict(
        name="pna_multitask", conv="pna", conv_options=conv_options(), hidden=16, fc_layers=3, gru=True,
        max_layers=-1, max_set2set_steps=-1))  # -1: from the data (max N/2, max N)
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam_l2", lr=3e-3, weight_decay=1e-6, schedule="constant", b1=0.9, b2=0.999, eps=1e-8,
        grad_clip_norm=0.0))
    config.num_epochs = 10000
    config.patience_epochs = 1000
    config.eval_every_epochs = 1
    config.checkpoint_every_epochs = 50
    config.log_every_steps = 50
    config.eval_log_every = 10  # print every 10th validation result (all go to TensorBoard)
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    # filled in by the experiment from the data
    config.steps_per_epoch = -1
    config.num_train_steps = -1
    config.eval_every_steps = -1
    config.checkpoint_every_steps = -1

    opts = config.model.conv_options
    if variant == "pna_no_scalers":
        opts.scalers = ("identity",)
    elif variant in ("mpnn_sum", "mpnn_max"):
        config.model.conv = "mpnn"
        opts.aggregation = variant.split("_")[1]
    elif variant in ("gcn", "gat", "gin"):
        config.model.conv = variant
    elif variant == "tiny":
        config.data.graphs_per_batch = {"train": 4, "val": 2, "default": 2}
        config.num_epochs = 3
        config.patience_epochs = 2
        config.checkpoint_every_epochs = 1
        config.log_every_steps = 5
        config.eval_log_every = 1
    return config
