r"""PNA on ZINC (the 12k-molecule subset): ``--config=configs/pna_zinc.py:<variant>``.

The paper's runs (``realworld_benchmark/README.md``, "for the paper, 1st version of the datasets,
~100k parameters"; reported test MAE 0.320 without and 0.188 with edge features):
  no_edges  --L=4 --hidden_dim=75 --out_dim=70 --residual --graph_norm --batch_norm --towers=5
            --divide_input_first=False --divide_input_last=True --lr_schedule_patience=5
  edges     (default) --L=4 --hidden_dim=70 --out_dim=60 --edge_feat --edge_dim=50 --towers=5
            --divide_input_first=True --divide_input_last=True --lr_schedule_patience=20
both: sum readout, batch 128, Adam lr 1e-3, weight decay 3e-6, lr x0.5 on plateau down to 1e-5,
up to 1000 epochs (``configs/molecules_graph_regression_pna_ZINC.json``).
  tiny      a few epochs on a small file (tests write one with jaxmodels.projects.pna.zinc_data.write_zinc_raw)
Data: ``--config.data.root=<dir>`` holding raw/{train,val,test}.{pickle,index} (PyG's ZINC layout:
molecules.zip from benchmarking-gnns plus the subset index files). Nothing is downloaded.
"""
import ml_collections

VARIANTS = ("edges", "no_edges", "tiny")


def get_config(variant: str = "edges") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"configs/pna_zinc.py: unknown variant {variant!r}; choose from {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.experiment = "pna_zinc"
    config.name = f"pna_zinc_{variant}"
    config.seed = 41
    config.data = ml_collections.ConfigDict(dict(root="", subset=True))
    config.model = ml_collections.ConfigDict(dict(
        name="pna_regressor", hidden=70, out_dim=60, num_layers=4, num_atom_types=28, num_bond_types=4,
        edge_features=True, edge_dim=50, residual=True, graph_norm=True, batch_norm=True,
        divide_input_first=True, divide_input_last=True, readout="sum",
        conv_options=ml_collections.ConfigDict(dict(
            aggregators=("mean", "max", "min", "std"), scalers=("identity", "amplification", "attenuation"),
            towers=5, delta=-1.0, pre_layers=1, post_layers=1))))
    config.optimizer = ml_collections.ConfigDict(dict(
        lr=1e-3, min_lr=1e-5, weight_decay=3e-6, lr_reduce_factor=0.5, lr_patience=20))
    config.batch_size = 128
    config.num_epochs = 1000
    config.eval_every_epochs = 1
    config.checkpoint_every_epochs = 5
    config.log_every_steps = 50
    config.eval_log_every = 5
    config.keep_checkpoints = 2
    config.async_checkpoints = True
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.steps_per_epoch = -1
    config.num_train_steps = -1
    config.eval_every_steps = -1
    config.checkpoint_every_steps = -1
    if variant == "no_edges":
        config.model.update(dict(hidden=75, out_dim=70, edge_features=False, divide_input_first=False))
        config.optimizer.lr_patience = 5
    elif variant == "tiny":
        config.model.update(dict(hidden=20, out_dim=20, edge_dim=8))
        config.batch_size = 8
        config.num_epochs = 2
        config.log_every_steps = 2
        config.eval_log_every = 1
        config.checkpoint_every_epochs = 1
    return config
