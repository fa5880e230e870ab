"""Where a job's stream goes: TRTC's RTMP and WHIP ingest URL shapes (../shared/TRTC.md)."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def rtmp_room(room_id: int | None, str_room_id: str | None) -> str:
    """The RTMP room name for a job: TRTC's RTMP ingest knows only string rooms.

    A numeric ``RoomId`` (which wins when both are given) is pushed as the string room
    named by its decimal digits: TRTC clients must enter string room "123" to see it.
    """
    if room_id is not None:
        return str(room_id)
    if str_room_id is None:
        raise ValueError("a job needs RoomId or StrRoomId")
    return str_room_id


def push_url(base: str, room: str, sdk_app_id: int, user_id: str, user_sig: str) -> str:
    """``<base>/<room>?sdkappid=…&userid=…&usersig=…`` (the UserSig is a secret)."""
    query = urlencode({"sdkappid": sdk_app_id, "userid": user_id, "usersig": user_sig})
    return f"{base.rstrip('/')}/{quote(room, safe='')}?{query}"


#: What a push with ``Whip: "trtc"`` shows and records as its WHIP endpoint.
TRTC_WHIP = "trtc"


def trtc_whip_endpoint(base: str, room: str, sdk_app_id: int, user_id: str) -> str:
    """TRTC's WHIP ingest for ``user_id`` publishing into ``room``:
    ``<base>/<SDKAppID>/<room>?SessionID=<user_id>``, the user's UserSig as its bearer token.

    Tencent's own OBS sample (Tencent-RTC/obs-trtc) names the path's stream "the room ID for
    TRTC" and the SessionID "the user ID for TRTC", signed as that user.
    """
    query = urlencode({"SessionID": user_id})
    return f"{base.rstrip('/')}/{sdk_app_id}/{quote(room, safe='')}?{query}"
