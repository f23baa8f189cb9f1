"""Frame sources: camera index, RTSP/HTTP URL, video file."""
