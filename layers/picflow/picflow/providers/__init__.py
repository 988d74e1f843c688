"""Provider clients: task/pic, Tencent AI Art and HD redraw, all on httpx.

Import the one you need (``picflow.providers.taskpic`` etc.); nothing heavy is imported here.
"""
