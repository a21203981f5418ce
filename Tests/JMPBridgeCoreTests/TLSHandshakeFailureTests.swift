import JMPTLS
import NIOCore
import NIOSSL
import Testing

@testable import JMPGateway

/// What a failed TLS handshake is logged and reported as (the interop tests see the real ones:
/// a grpcio client trusting another CA, raw bytes on a TLS port, an untrusted controller).
@Suite struct TLSHandshakeFailureTests {
    @Test("BoringSSL's reason is read out of NIOSSL's error text, without the build path")
    func reason() {
        let text =
            "sslError([Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:"
            + "CERTIFICATE_VERIFY_FAILED at /work/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/"
            + "handshake.cc:320])"
        #expect(TLSHandshakeFailure.reason(in: text) == "CERTIFICATE_VERIFY_FAILED")
        #expect(TLSHandshakeFailure.reason(in: "sslError([Error:  EOF during handshake])") == nil)
        // A CA in the file with the signer's name but not its key (a CA renewed under the same
        // name): the crypto library's errors come first, the handshake's reason last.
        let chain =
            "sslError([Error: 436207716 error:1a000064:ECDSA routines:OPENSSL_internal:BAD_SIGNATURE at "
            + "/b/ecdsa.cc.inc:105, Error: 184549382 error:0b000006:X.509 certificate routines:OPENSSL_internal:"
            + "public key routines at /b/a_verify.cc:61, Error: 268435581 error:1000007d:SSL routines:"
            + "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /b/handshake.cc:320])"
        #expect(TLSHandshakeFailure.reason(in: chain) == "CERTIFICATE_VERIFY_FAILED")
    }

    @Test("a peer that hangs up mid-handshake, a hostname mismatch; anything else is not a handshake failure")
    func classification() {
        let eof = NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake]))
        #expect(TLSHandshakeFailure(eof)?.code == "EOF")
        #expect(TLSHandshakeFailure(NIOSSLExtraError.failedToValidateHostname)?.code == "HOSTNAME_MISMATCH")
        #expect(TLSHandshakeFailure(NIOSSLError.uncleanShutdown) == nil)
        #expect(TLSHandshakeFailure(ChannelError.ioOnClosedChannel) == nil)
    }

    @Test("as the server of a listener: what the client did, and where to look")
    func asServer() {
        #expect(TLSHandshakeFailure(code: "EOF").asServer.contains("does not trust the bridge's certificate"))
        #expect(
            TLSHandshakeFailure(code: "TLSV1_ALERT_UNKNOWN_CA").asServer
                == "the client refused the bridge's certificate (alert: unknown ca): check the CA it trusts "
                + "and the certificate's names and dates"
        )
        #expect(TLSHandshakeFailure(code: "CERTIFICATE_VERIFY_FAILED").asServer.contains("client-ca"))
        #expect(TLSHandshakeFailure(code: "WRONG_VERSION_NUMBER").asServer.contains("does not speak TLS"))
        #expect(TLSHandshakeFailure(code: "SSLV3_ALERT_CLOSE_NOTIFY").asServer.hasSuffix("(alert: close notify)"))
        #expect(TLSHandshakeFailure(code: "BAD_PACKET_LENGTH").asServer == "the handshake failed (BAD_PACKET_LENGTH)")
    }

    @Test("as the gateway's client side: which CA file or name the server's certificate failed")
    func asClient() {
        let endpoint = UpstreamEndpoint(host: "controller.example.com", port: 443)
        #expect(
            TLSHandshakeFailure(code: "CERTIFICATE_VERIFY_FAILED").asClient(endpoint, trust: .caFile("/etc/ca.pem"))
                == "TLS: the server's certificate does not chain to the CA certificates in /etc/ca.pem"
        )
        #expect(
            TLSHandshakeFailure(code: "CERTIFICATE_VERIFY_FAILED").asClient(endpoint, trust: .systemRoots)
                .hasSuffix("the system's CA certificates")
        )
        #expect(
            TLSHandshakeFailure(code: "HOSTNAME_MISMATCH").asClient(endpoint, trust: .systemRoots)
                .contains("is not for controller.example.com")
        )
        #expect(
            TLSHandshakeFailure(code: "TLSV13_ALERT_CERTIFICATE_REQUIRED").asClient(endpoint, trust: .systemRoots)
                .contains("requires a client certificate")
        )
    }
}
