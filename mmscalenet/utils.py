"""Small shared helpers."""
import logging

_logger = logging.getLogger('mmscalenet')


def log(msg: str, level: int = logging.INFO) -> None:
    """Log through mmengine's current logger when one exists (so it lands in the run's log file), else stdlib."""
    try:
        from mmengine.logging import MMLogger, print_log
    except ImportError:
        _logger.log(level, msg)
        return
    if MMLogger.get_current_instance is not None and MMLogger._instance_dict:
        print_log(msg, logger='current', level=level)
    else:
        _logger.log(level, msg)
