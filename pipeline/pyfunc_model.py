"""MLflow models-from-code entry: the pyfunc that scores sentence pairs with a logged pair-model folder."""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.models import set_model

from pipeline.paths import PAIR_FOLDER


class PairSimilarityModel(mlflow.pyfunc.PythonModel):
    """predict(DataFrame with sentence1, sentence2) -> 0-5 similarity scores."""

    def load_context(self, context) -> None:
        from pipeline.scoring import PairScorer

        self.scorer = PairScorer.from_folder(context.artifacts[PAIR_FOLDER])

    def predict(self, context, model_input, params=None):
        pairs = list(zip(model_input["sentence1"].astype(str), model_input["sentence2"].astype(str), strict=True))
        return self.scorer.score(pairs)


set_model(PairSimilarityModel())
