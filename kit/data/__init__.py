"""The data floor: a data folder -> the images, labels and test ids it holds -> folds.csv.

    unpack.unpack_all(folder) every archive of a download unpacked, safely
    discover                  where a download keeps its parts: a table of rules (the sample, the label file, ...);
                              a new reader (JSON annotations, HDF5, several files per image) is a module of its
                              own here, which a rule of that table calls
    layout.scan(data)         the layout, task and submission format of a data folder (Layout)
    annotations               labels and test lists kept in JSON (COCO-style: iWildCam, Herbarium)
    checks.find_bad_images    every image decoded once: which cannot be used
    folds.run(cfgs)           the `folds` command: folds.csv and folds.json; folds.load(cfg) reads them
    loaders.fold_loaders(...) a fold's training and validation DataLoaders (albumentations transforms)
    cache.run(cfgs)           the `cache` command: every image resized once
    demo.run(out)             the embedded demo data (scikit-learn's digits); synth: the bench's data sets

May import the core (kit/*.py) alone; no later floor. Modules are imported by name (`from kit.data
import folds`): this file loads none of them, so that a command pays only for what it uses.
"""
