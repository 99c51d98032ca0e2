"""(face written in the next commit)"""
