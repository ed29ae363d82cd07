"""tunesmith: fine-tune pre-trained language models on your own data.

import tunesmith
result = tunesmith.run("recipes/financial_sentiment.yaml")
predictor = tunesmith.Predictor.load(result.run_dir)
predictor.predict(["Profit rose 20% on strong demand."])
"""

from . import log
from .errors import TunesmithError
from .methods import METHODS
from .models.registry import MODELS
from .pipeline import RunResult, run
from .predict import Predictor
from .recipe import Recipe, load_recipe

__all__ = ["log", "load_recipe", "run", "Predictor", "Recipe", "RunResult", "MODELS", "METHODS", "TunesmithError"]
__version__ = "0.1.0"
