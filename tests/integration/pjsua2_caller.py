"""PJSIP (pjsua2, the SIP stack inside Asterisk) as a caller over TLS, run as a subprocess:

    python -m tests.integration.pjsua2_caller URI SPEECH_WAV OUT_WAV SECONDS CA [CERT KEY]

It verifies the gateway's certificate against CA, presents CERT/KEY when given (mutual TLS),
plays SPEECH_WAV into the call, records what it hears into OUT_WAV (8 kHz mono) and hangs up
after SECONDS. Prints one JSON line: whether the call was confirmed and its last status.
A subprocess, because pjsua2 runs its own threads and polling loop beside no asyncio loop.
"""

from __future__ import annotations

import json
import sys
import time

import pjsua2 as pj


class Caller(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, speech: str, out: str) -> None:
        super().__init__(account)
        self.speech, self.out = speech, out
        self.confirmed = False
        self.disconnected = False
        self.status = 0
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None

    def onCallState(self, prm: object) -> None:  # pjsua2's name
        info = self.getInfo()
        self.status = int(info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: object) -> None:
        if self.player is not None:
            return
        media = self.getAudioMedia(-1)  # getInfo().media is garbage in this build
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(self.speech, pj.PJMEDIA_FILE_NO_LOOP)
        self.player.startTransmit(media)
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(self.out)
        media.startTransmit(self.recorder)


def main(argv: list[str]) -> int:
    uri, speech, out, seconds, ca = argv[:5]
    cert, key = (argv[5], argv[6]) if len(argv) >= 7 else ("", "")
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 3
    config.logConfig.consoleLevel = 3
    config.medConfig.clockRate = 8000
    config.medConfig.sndClockRate = 8000
    config.medConfig.channelCount = 1
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    transport.publicAddress = "127.0.0.1"
    transport.tlsConfig.CaListFile = ca
    transport.tlsConfig.certFile = cert
    transport.tlsConfig.privKeyFile = key
    transport.tlsConfig.verifyServer = True
    transport.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_TLS, transport)
    endpoint.audDevManager().setNullDev()
    endpoint.libStart()
    account_config = pj.AccountConfig()
    account_config.idUri = "sip:pjsua@127.0.0.1"
    # Loopback only: left alone, PJSIP writes the host's interface address in its SDP.
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account_config.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    account = pj.Account()
    account.create(account_config)
    call = Caller(account, speech, out)
    call.makeCall(uri, pj.CallOpParam(True))
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline and not call.disconnected:
        endpoint.libHandleEvents(20)
    if not call.disconnected:
        call.hangup(pj.CallOpParam(True))
        end = time.monotonic() + 5
        while time.monotonic() < end and not call.disconnected:
            endpoint.libHandleEvents(20)
    result = {"confirmed": call.confirmed, "status": call.status}
    call.recorder = None
    call.player = None
    del call
    endpoint.libDestroy()
    print(json.dumps(result), flush=True)
    return 0 if result["confirmed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
