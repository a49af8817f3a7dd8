# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``--tracking mlflow`` on a bundle: MONAI's MLflow settings attached to our trainer and evaluator, end to end.

Runs the synthetic bundle with tiny overrides through ``monai.bundle.run(..., tracking="mlflow")`` (what
``python -m monai.bundle run ... --tracking mlflow`` calls) and reads the run back from the MLflow store: the
training loss and every validation metric (the key metric QWK and the per-class recalls as scalars) are logged.
"""

from __future__ import annotations

import os
import tempfile
import unittest
import warnings
from pathlib import Path

import mlflow
from monai.bundle import run
from monai.utils import path_to_sqlite_uri

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "qmix_synthetic" / "configs"


class TestMLflowTracking(unittest.TestCase):
    def test_tracking_mlflow(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "bundle")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(
                    config_file=str(CONFIGS / "train.json"),
                    meta_file=str(CONFIGS / "metadata.json"),
                    logging_file=str(CONFIGS / "logging.conf"),
                    tracking="mlflow",
                    bundle_root=root,
                    dataset_dir=os.path.join(tmp, "data"),
                    synthdr_num=40,
                    epochs=2,
                    warmup_epochs=1,
                    image_size=32,
                    batch_size=4,
                    num_workers=0,
                    network="small_cnn",
                    progress=False,
                )
                db = Path(root, "eval", "mlruns.db")  # MONAI's default: <bundle_root>/eval/mlruns.db
                self.assertTrue(db.is_file())
                client = mlflow.MlflowClient(tracking_uri=path_to_sqlite_uri(str(db)))
                runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
            self.assertEqual(len(runs), 1)
            metrics = runs[0].data.metrics
            expected = {"train_loss", "val_qwk", "val_accuracy", "val_macro_f1", "val_auc_ovr"}
            expected |= {f"val_per_class_recall_{c}" for c in range(5)}
            self.assertTrue(expected <= set(metrics), sorted(metrics))
            history = client.get_metric_history(runs[0].info.run_id, "val_qwk")
            self.assertEqual(sorted(m.step for m in history), [1, 2])  # one value per epoch


if __name__ == "__main__":
    unittest.main()
