"""Synthetic counting VQA in the on-disk layout of VQA v2 + bottom-up-attention features.

A small stand-in for VQA v2 (Zhang et al., ICLR 2018, "Learning to Count Objects in Natural Images for
VQA") that exercises the real readers of :mod:`jaxmodels.projects.vqa_counting.data`: :func:`write_synthetic_vqa` writes

  features-trainval.h5                            HDF5 layout of vqa-counting preprocess-features.py:
                                                  ``features`` [N, D, K], ``boxes`` [N, 4, K], ``ids``,
                                                  ``widths``, ``heights`` (train and val images)
  v2_OpenEnded_mscoco_{train,val}2014_questions.json   VQA v2 questions
  v2_mscoco_{train,val}2014_annotations.json           VQA v2 annotations (10 human answers each)
  vocab.json                                      :func:`jaxmodels.projects.vqa_counting.data.build_vocab` of the train split
  scenes.npz                                      ground truth (per-proposal class / object, counts)

Each image is 100 x 100 pixels and has up to K = ``num_boxes`` proposals, like a detector's output:

* objects: 0..``max_objects`` of them, each of one of ``num_classes`` classes ("red ball", "blue cube",
  ...), each in its own cell of a 4 x 4 grid (so distinct objects never overlap); an object gets 1..
  ``max_duplicates`` proposals, its box jittered by ``jitter`` x its size per coordinate (overlapping
  duplicates -- what the counting component has to de-duplicate). Objects are dropped from the end of
  the list if their proposals would leave fewer than ``min_background`` slots.
* background: ``min_background``.. up to the free slots of random large boxes anywhere;
* padding: the remaining slots are zero (features and boxes), as in the bottom-up features with fewer
  than K boxes. The non-padding proposals are in random order.

A proposal's feature is its class's embedding (a fixed random unit vector in D = ``feature_dim``
dimensions; background has its own) plus N(0, ``noise``^2) per coordinate.

Questions per image: "how many <class>s are there?" for every class (answer: the number of objects
of that class placed, as a digit string, ``answer_type`` "number") and ``yes_no_per_image`` "is there a
<class>?" for random classes ("yes"/"no", ``answer_type`` "yes/no"). Each human answer is replaced with
probability ``answer_noise`` by a wrong one (count +-1, floored at 0; yes <-> no);
``multiple_choice_answer`` is the true answer. Deterministic for ``seed`` (numpy ``default_rng``).
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from jaxmodels.projects.vqa_counting.data import NUM_HUMAN_ANSWERS, build_vocab, save_vocab
from jaxmodels.training.files import atomic_path, atomic_save_npz, atomic_write_json

__all__ = ["COLORS", "SHAPES", "IMAGE_SIZE", "class_names", "make_scenes", "write_synthetic_vqa"]

COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
SHAPES = ("ball", "cube", "cylinder", "cone", "ring", "disc", "star", "block")
IMAGE_SIZE = 100  # pixels, width and height
GRID = 4  # objects sit in distinct cells of a GRID x GRID grid
BACKGROUND = -1  # proposal_class of a background proposal
PADDING = -2  # proposal_class of an empty slot

FILE_NAMES = {
    "features": "features-trainval.h5",
    "train_questions": "v2_OpenEnded_mscoco_train2014_questions.json",
    "train_annotations": "v2_mscoco_train2014_annotations.json",
    "val_questions": "v2_OpenEnded_mscoco_val2014_questions.json",
    "val_annotations": "v2_mscoco_val2014_annotations.json",
    "vocab": "vocab.json",
    "scenes": "scenes.npz",
}


def class_names(num_classes: int) -> list[str]:
    """``"red ball", "blue cube", "green cylinder", ...`` (unique for up to 64 classes)."""
    if not 1 <= num_classes <= len(COLORS) * len(SHAPES):
        raise ValueError(f"num_classes must be in 1..{len(COLORS) * len(SHAPES)}, got {num_classes}")
    return [f"{COLORS[i % len(COLORS)]} {SHAPES[(i + i // len(COLORS)) % len(SHAPES)]}" for i in range(num_classes)]


def make_scenes(num_images: int, rng: np.random.Generator, embeddings: np.ndarray, *, num_boxes: int = 16,
                max_objects: int = 6, max_duplicates: int = 3, min_background: int = 1, jitter: float = 0.1,
                noise: float = 0.1) -> dict[str, np.ndarray]:
    """``num_images`` scenes (module docstring), vectorised over images.

    ``embeddings`` [num_classes + 1, D]: class embeddings, the last row for background. Returns
    ``features`` [N, K, D] float32, ``boxes`` [N, K, 4] float32 (x1, y1, x2, y2 pixels),
    ``proposal_class`` [N, K] int32 (class, -1 background, -2 padding), ``proposal_object`` [N, K] int32
    (object index within the image, -1 otherwise), ``counts`` [N, num_classes] int32.
    """
    num_classes = embeddings.shape[0] - 1
    n, k, m, dmax = num_images, num_boxes, max_objects, max_duplicates
    if not 0 <= max_objects <= GRID * GRID:
        raise ValueError(f"max_objects must be in 0..{GRID * GRID}, got {max_objects}")
    if not 0 <= min_background <= num_boxes:
        raise ValueError(f"min_background must be in 0..num_boxes={num_boxes}, got {min_background}")
    if max_duplicates < 1:
        raise ValueError(f"max_duplicates must be >= 1, got {max_duplicates}")
    cell = IMAGE_SIZE / GRID

    # Objects [n, m]: a prefix of the m slots is used; drop objects whose proposals do not fit.
    n_obj = rng.integers(0, m + 1, size=n)
    cells = np.argsort(rng.random((n, GRID * GRID)), axis=1)[:, :m]
    cls = rng.integers(0, num_classes, size=(n, m))
    dups = rng.integers(1, dmax + 1, size=(n, m))
    obj_valid = np.arange(m)[None, :] < n_obj[:, None]
    obj_valid &= np.cumsum(dups * obj_valid, axis=1) <= k - min_background
    row, col = np.divmod(cells, GRID)
    size = rng.uniform(0.45, 0.85, size=(n, m, 2)) * cell  # (w, h)
    x1 = col * cell + rng.random((n, m)) * (cell - size[..., 0])
    y1 = row * cell + rng.random((n, m)) * (cell - size[..., 1])
    obj_box = np.stack([x1, y1, x1 + size[..., 0], y1 + size[..., 1]], axis=-1)  # [n, m, 4]

    # Duplicate proposals [n, m, dmax] -> [n, m * dmax].
    scale = np.concatenate([size, size], axis=-1)[:, :, None, :]  # [n, m, 1, 4]
    dup_box = obj_box[:, :, None, :] + jitter * scale * rng.standard_normal((n, m, dmax, 4))
    dup_valid = obj_valid[:, :, None] & (np.arange(dmax)[None, None, :] < dups[:, :, None])
    dup_class = np.broadcast_to(cls[:, :, None], (n, m, dmax))
    dup_object = np.broadcast_to(np.arange(m)[None, :, None], (n, m, dmax))

    # Background proposals [n, k]: min_background..free slots of large random boxes.
    free = k - dup_valid.reshape(n, -1).sum(axis=1)
    n_bg = rng.integers(min_background, free + 1)
    bg_wh = rng.uniform(0.2, 1.0, size=(n, k, 2)) * IMAGE_SIZE
    bg_xy = rng.random((n, k, 2)) * (IMAGE_SIZE - bg_wh)
    bg_box = np.concatenate([bg_xy, bg_xy + bg_wh], axis=-1)
    bg_valid = np.arange(k)[None, :] < n_bg[:, None]

    boxes = np.concatenate([dup_box.reshape(n, -1, 4), bg_box], axis=1)
    valid = np.concatenate([dup_valid.reshape(n, -1), bg_valid], axis=1)
    klass = np.concatenate([dup_class.reshape(n, -1), np.full((n, k), BACKGROUND)], axis=1)
    obj = np.concatenate([dup_object.reshape(n, -1), np.full((n, k), -1)], axis=1)
    # Valid proposals first, in random order; every valid one fits in the first k slots.
    order = np.argsort(np.where(valid, rng.random(valid.shape), 2.0), axis=1)[:, :k]
    take = lambda a: np.take_along_axis(a, order, axis=1)
    valid, klass, obj = take(valid), take(klass), take(obj)
    boxes = np.take_along_axis(boxes, order[..., None], axis=1)
    boxes = np.clip(boxes, 0.0, IMAGE_SIZE)
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1.0)  # at least 1 pixel wide/high
    boxes = np.where(valid[..., None], boxes, 0.0).astype(np.float32)
    klass = np.where(valid, klass, PADDING).astype(np.int32)
    obj = np.where(valid, obj, -1).astype(np.int32)

    emb_index = np.where(klass == BACKGROUND, num_classes, klass)
    feats = embeddings[np.maximum(emb_index, 0)] + noise * rng.standard_normal((n, k, embeddings.shape[1]))
    feats = np.where(valid[..., None], feats, 0.0).astype(np.float32)
    counts = np.stack([(obj_valid & (cls == c)).sum(axis=1) for c in range(num_classes)], axis=1).astype(np.int32)
    return {"features": feats, "boxes": boxes, "proposal_class": klass, "proposal_object": obj, "counts": counts}


def _qa(image_ids: np.ndarray, counts: np.ndarray, names: list[str], rng: np.random.Generator, *,
        yes_no_per_image: int, answer_noise: float, split: str) -> tuple[dict, dict]:
    """Questions and annotations JSON dicts (VQA v2 layout) for one split."""
    n, num_classes = counts.shape
    # [n, q] question classes and kinds: every class as "how many", then yes/no on random classes.
    yn_classes = rng.integers(0, num_classes, size=(n, yes_no_per_image))
    q_class = np.concatenate([np.broadcast_to(np.arange(num_classes), (n, num_classes)), yn_classes], axis=1)
    is_count = np.zeros(q_class.shape, bool)
    is_count[:, :num_classes] = True
    true = np.take_along_axis(counts, q_class, axis=1)  # [n, q]
    # Human answers [n, q, 10]: true value, some replaced by a wrong one.
    wrong = rng.random((*q_class.shape, NUM_HUMAN_ANSWERS)) < answer_noise
    step = np.where(rng.random(wrong.shape) < 0.5, -1, 1)
    count_answers = np.where(wrong, np.maximum(true[..., None] + step, 0), true[..., None])
    count_answers = np.where(wrong & (true[..., None] == 0), 1, count_answers)  # 0 - 1 -> 1 (still wrong)
    present = (true > 0)[..., None]
    yn_answers = np.where(wrong, ~present, present)

    questions, annotations = [], []
    for i, image_id in enumerate(image_ids.tolist()):
        for j in range(q_class.shape[1]):
            name = names[q_class[i, j]]
            qid = image_id * 1000 + j  # VQA convention: image id * 1000 + question number
            if is_count[i, j]:
                text, qtype, atype = f"how many {name}s are there?", "how many", "number"
                answers = [str(a) for a in count_answers[i, j].tolist()]
                mc = str(int(true[i, j]))
            else:
                article = "an" if name[0] in "aeiou" else "a"
                text, qtype, atype = f"is there {article} {name}?", f"is there {article}", "yes/no"
                answers = ["yes" if a else "no" for a in yn_answers[i, j].tolist()]
                mc = "yes" if true[i, j] > 0 else "no"
            questions.append({"image_id": image_id, "question": text, "question_id": qid})
            annotations.append({
                "question_type": qtype, "multiple_choice_answer": mc,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": t + 1} for t, a in enumerate(answers)],
                "image_id": image_id, "answer_type": atype, "question_id": qid})
    info = {"description": "synthetic counting VQA (jaxmodels.projects.vqa_counting.synthetic_scenes)", "version": "2.0"}
    common = {"info": info, "license": {"name": "synthetic"}, "data_type": "mscoco", "data_subtype": f"{split}2014"}
    return ({**common, "task_type": "Open-Ended", "questions": questions}, {**common, "annotations": annotations})


def write_synthetic_vqa(directory, num_train_images: int = 1000, num_val_images: int = 200, seed: int = 0, *,
                        num_boxes: int = 16, num_classes: int = 4, feature_dim: int = 64, max_objects: int = 6,
                        max_duplicates: int = 3, min_background: int = 1, jitter: float = 0.1, noise: float = 0.1,
                        yes_no_per_image: int = 1, answer_noise: float = 0.0,
                        max_answers: int = 3000) -> dict[str, str]:
    """Writes a synthetic train and val split (module docstring) into ``directory``.

    Train images have COCO ids ``1..num_train_images``, val images the following ones; both are in one
    features file. Returns ``{"features", "train_questions", "train_annotations", "val_questions",
    "val_annotations", "vocab", "scenes"}`` -> path. ``scenes.npz`` holds ``image_ids`` [N],
    ``proposal_class`` / ``proposal_object`` [N, K], ``counts`` [N, C], ``class_names`` and
    ``embeddings`` [C + 1, D] (train then val images). Every file is written atomically.
    """
    os.makedirs(directory, exist_ok=True)
    paths = {key: os.path.join(os.fspath(directory), name) for key, name in FILE_NAMES.items()}
    rng = np.random.default_rng(seed)
    names = class_names(num_classes)
    embeddings = rng.standard_normal((num_classes + 1, feature_dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    scene_kw = dict(num_boxes=num_boxes, max_objects=max_objects, max_duplicates=max_duplicates,
                    min_background=min_background, jitter=jitter, noise=noise)
    n = num_train_images + num_val_images
    scenes = make_scenes(n, rng, embeddings, **scene_kw)
    image_ids = np.arange(1, n + 1, dtype=np.int64)
    splits = {"train": slice(0, num_train_images), "val": slice(num_train_images, n)}
    qa = {split: _qa(image_ids[s], scenes["counts"][s], names, rng, yes_no_per_image=yes_no_per_image,
                     answer_noise=answer_noise, split=split) for split, s in splits.items()}

    with atomic_path(paths["features"]) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=scenes["features"].transpose(0, 2, 1))
        f.create_dataset("boxes", data=scenes["boxes"].transpose(0, 2, 1))
        f.create_dataset("ids", data=image_ids.astype(np.int32))
        f.create_dataset("widths", data=np.full(n, IMAGE_SIZE, np.int32))
        f.create_dataset("heights", data=np.full(n, IMAGE_SIZE, np.int32))
    atomic_save_npz(paths["scenes"], {"image_ids": image_ids, "proposal_class": scenes["proposal_class"],
                                      "proposal_object": scenes["proposal_object"], "counts": scenes["counts"],
                                      "class_names": np.asarray(names), "embeddings": embeddings.astype(np.float32)})
    for split, (questions_json, annotations_json) in qa.items():
        atomic_write_json(paths[f"{split}_questions"], questions_json)
        atomic_write_json(paths[f"{split}_annotations"], annotations_json)
    save_vocab(build_vocab(qa["train"][0], qa["train"][1], max_answers=max_answers), paths["vocab"])
    return paths
