"""The RPO trace (rpo.py: "every prompt, reply, grounding and error is kept in a JSON-ready trace"), pinned whole on two
runs of the fake describer and grounder: an initial text, a reply that cannot be parsed, a look-alike found and then
left out; and a run where every describer round fails and the fallback describes. Timings are only checked to be
there. The expected traces were read against the method before being frozen here."""

from __future__ import annotations

import json

from chattracker.mllm.errors import ReplyParseError
from chattracker.rpo import RPOConfig, run_rpo
from chattracker.types import Description
from tests.test_rpo_fakes import SCENE, TARGET, ScriptedDescriber, WordGrounder, image


def without_timings(trace: dict) -> dict:
    assert isinstance(trace.pop("seconds"), float)
    for record in trace["rounds"]:
        if record["source"] == "describer":
            assert isinstance(record.pop("seconds"), float)
    for key in ("describer", "grounder", "config"):
        trace.pop(key)
    return trace


def test_the_trace_of_a_run_with_an_initial_text_an_unreadable_reply_and_a_look_alike():
    describer = ScriptedDescriber([ReplyParseError("no phrase in the reply", reply="???"),
                                   Description("red person", "car"), "red left"])
    result = run_rpo(image(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=3), initial_text="  person ")
    assert without_timings(result.trace) == json.loads(WITH_INITIAL_TEXT)
    assert result.description == Description("person", "tree. car") and result.top1_iou == 1.0


def test_the_trace_of_a_run_that_falls_back():
    failing = ScriptedDescriber([Description("  ", ""), ReplyParseError("x", reply=None, prompt={"text": "p"})])
    result = run_rpo(image(), TARGET, failing, WordGrounder(SCENE), RPOConfig(iterations=2),
                     fallback=ScriptedDescriber(["blue car"]))
    assert without_timings(result.trace) == json.loads(FALLBACK)
    assert result.description.foreground == "blue car" and result.top1_iou == 0.0


WITH_INITIAL_TEXT = '''\
{
 "version": 1,
 "box": [
  100.0,
  100.0,
  40.0,
  80.0
 ],
 "image": {
  "width": 640,
  "height": 480,
  "sha256": "1c33a835c2090c2db261055ca2450d2e14fed958a2609e3d46ad53094adbfbf0"
 },
 "initial_text": "person",
 "rounds": [
  {
   "round": 0,
   "source": "initial_text",
   "exchanges": [],
   "error": null,
   "description": {
    "foreground": "person",
    "background": ""
   },
   "grounding": {
    "phrases": [
     "person"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       100.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 1.0,
      "label": "person",
      "iou": 1.0,
      "positive": true,
      "word": "person"
     },
     {
      "box": [
       300.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 1.0,
      "label": "person",
      "iou": 0.0,
      "positive": false,
      "word": "person"
     }
    ],
    "top1_iou": 1.0
   },
   "top1_iou": 1.0,
   "positive_words": [
    "person"
   ],
   "negative_words": [
    "person"
   ]
  },
  {
   "round": 1,
   "source": "describer",
   "error": "ReplyParseError: no phrase in the reply",
   "feedback": {
    "positive_words": [
     "person"
    ],
    "negative_words": [
     "person"
    ],
    "history": [
     {
      "foreground": "person",
      "background": "",
      "top1_iou": 1.0
     }
    ],
    "initial_text": "person"
   },
   "exchanges": [
    {
     "prompt": null,
     "reply": "???"
    }
   ]
  },
  {
   "round": 2,
   "source": "describer",
   "error": null,
   "feedback": {
    "positive_words": [
     "person"
    ],
    "negative_words": [
     "person"
    ],
    "history": [
     {
      "foreground": "person",
      "background": "",
      "top1_iou": 1.0
     }
    ],
    "initial_text": "person"
   },
   "exchanges": [
    {
     "reply": ""
    }
   ],
   "description": {
    "foreground": "red person",
    "background": "car"
   },
   "grounding": {
    "phrases": [
     "red person"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       100.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 1.0,
      "label": "red person",
      "iou": 1.0,
      "positive": true,
      "word": "red"
     },
     {
      "box": [
       300.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 0.5,
      "label": "red person",
      "iou": 0.0,
      "positive": false,
      "word": "person"
     }
    ],
    "top1_iou": 1.0
   },
   "top1_iou": 1.0,
   "positive_words": [
    "red"
   ],
   "negative_words": [
    "person"
   ],
   "background_grounding": {
    "phrases": [
     "car"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       200.0,
       300.0,
       120.0,
       60.0
      ],
      "score": 1.0,
      "label": "car",
      "iou": 0.0,
      "positive": false,
      "word": "car"
     }
    ],
    "top1_iou": 0.0
   }
  },
  {
   "round": 3,
   "source": "describer",
   "error": null,
   "feedback": {
    "positive_words": [
     "red"
    ],
    "negative_words": [
     "person"
    ],
    "history": [
     {
      "foreground": "person",
      "background": "",
      "top1_iou": 1.0
     },
     {
      "foreground": "red person",
      "background": "car",
      "top1_iou": 1.0
     }
    ],
    "initial_text": "person"
   },
   "exchanges": [
    {
     "reply": ""
    }
   ],
   "description": {
    "foreground": "red left",
    "background": "tree. car"
   },
   "grounding": {
    "phrases": [
     "red left"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       100.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 1.0,
      "label": "red left",
      "iou": 1.0,
      "positive": true,
      "word": "red"
     }
    ],
    "top1_iou": 1.0
   },
   "top1_iou": 1.0,
   "positive_words": [
    "red"
   ],
   "negative_words": [],
   "background_grounding": {
    "phrases": [
     "tree",
     "car"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       200.0,
       300.0,
       120.0,
       60.0
      ],
      "score": 1.0,
      "label": "car",
      "iou": 0.0,
      "positive": false,
      "word": "car"
     }
    ],
    "top1_iou": 0.0
   }
  }
 ],
 "errors": [
  "round 1: ReplyParseError: no phrase in the reply"
 ],
 "selected_round": 0,
 "result": {
  "foreground": "person",
  "background": "tree. car",
  "top1_iou": 1.0,
  "first_top1_iou": 1.0
 }
}
'''

FALLBACK = '''\
{
 "version": 1,
 "box": [
  100.0,
  100.0,
  40.0,
  80.0
 ],
 "image": {
  "width": 640,
  "height": 480,
  "sha256": "1c33a835c2090c2db261055ca2450d2e14fed958a2609e3d46ad53094adbfbf0"
 },
 "initial_text": null,
 "rounds": [
  {
   "round": 1,
   "source": "describer",
   "error": "DescriberError: the describer returned an empty foreground phrase",
   "feedback": null,
   "exchanges": [
    {
     "prompt": null,
     "reply": ""
    }
   ]
  },
  {
   "round": 2,
   "source": "describer",
   "error": "ReplyParseError: x",
   "feedback": null,
   "exchanges": [
    {
     "prompt": {
      "text": "p"
     },
     "reply": null
    }
   ]
  },
  {
   "round": 3,
   "source": "fallback",
   "error": null,
   "describer": "scripted",
   "description": {
    "foreground": "blue car",
    "background": "tree. car"
   },
   "grounding": {
    "phrases": [
     "blue car"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       200.0,
       300.0,
       120.0,
       60.0
      ],
      "score": 1.0,
      "label": "blue car",
      "iou": 0.0,
      "positive": false,
      "word": "blue"
     },
     {
      "box": [
       300.0,
       100.0,
       40.0,
       80.0
      ],
      "score": 0.5,
      "label": "blue car",
      "iou": 0.0,
      "positive": false,
      "word": "blue"
     }
    ],
    "top1_iou": 0.0
   },
   "top1_iou": 0.0,
   "positive_words": [],
   "negative_words": [
    "blue"
   ],
   "background_grounding": {
    "phrases": [
     "tree",
     "car"
    ],
    "word_scores": true,
    "boxes": [
     {
      "box": [
       200.0,
       300.0,
       120.0,
       60.0
      ],
      "score": 1.0,
      "label": "car",
      "iou": 0.0,
      "positive": false,
      "word": "car"
     }
    ],
    "top1_iou": 0.0
   },
   "exchanges": []
  }
 ],
 "errors": [
  "round 1: DescriberError: the describer returned an empty foreground phrase",
  "round 2: ReplyParseError: x"
 ],
 "selected_round": 3,
 "result": {
  "foreground": "blue car",
  "background": "tree. car",
  "top1_iou": 0.0,
  "first_top1_iou": 0.0
 }
}
'''
