"""Frames from disk or from built-in clips: training clips, evaluation sequences, video I/O."""
from datasets.builtin import builtin_clip, builtin_split
from datasets.eval_sequences import EvalSequenceDataset
from datasets.image_folder import list_frames, list_sequence_dirs, read_frame_rgb
from datasets.train_clips import TrainClipDataset
from datasets.video_io import check_writable_output, read_video, write_video

__all__ = ["builtin_clip", "builtin_split", "EvalSequenceDataset", "list_frames", "list_sequence_dirs",
           "read_frame_rgb", "TrainClipDataset", "check_writable_output", "read_video", "write_video"]
