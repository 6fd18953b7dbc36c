import Testing

@testable import MTAgentCore

/// Builds a VPD 0x83 page from descriptors (header byte 0, header byte 1, body).
func page83(_ descriptors: [(UInt8, UInt8, [UInt8])]) -> [UInt8] {
    var body: [UInt8] = []
    for (b0, b1, value) in descriptors {
        body += [b0, b1, 0, UInt8(value.count)] + value
    }
    return [0x00, 0x83, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
}

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(hex)
    while chars.count >= 2 {
        out.append(UInt8(String(chars[0...1]), radix: 16)!)
        chars.removeFirst(2)
    }
    return out
}

let vmwareNAA = "6000c2912345678900aabbccddeeff01"

@Suite("VPD page 0x83 decoding", .tags(.small))
struct VPDPageTests {
    @Test func vmware16ByteNAA6() {
        let page = page83([(0x01, 0x03, bytes(hex: vmwareNAA))])
        let decoded = VPDPage.decodeDeviceIdentification(page)
        #expect(decoded.warnings.isEmpty)
        #expect(decoded.designators == [Designator(type: .naa, codeSet: .binary, association: .lun, value: vmwareNAA, naaFormat: 6)])
        #expect(WWID.from(designators: decoded.designators) == "3" + vmwareNAA)
    }

    @Test func eightByteNAAFormats() {
        for (hex, format) in [("5000c50012345678", 5), ("2000001122334455", 2), ("3000001122334455", 3), ("6000c29123456789", 6)] {
            let decoded = VPDPage.decodeDeviceIdentification(page83([(0x01, 0x03, bytes(hex: hex))]))
            #expect(decoded.designators.first?.naaFormat == format)
            #expect(decoded.designators.first?.value == hex)
            // NAA-6 is defined as 16 bytes; qemu's 64-bit wwn gives 8 and must still decode, with a warning.
            #expect(decoded.warnings.isEmpty == (format != 6))
        }
    }

    @Test func everyDesignatorTypeAndCodeSet() {
        let t10 = Array("VMware  Virtual disk    6000c29abc".utf8)
        let name = Array("naa.6000C2912345678900AABBCCDDEEFF01".utf8) + [0, 0, 0, 0]
        let uuid = [0x10, 0x00] + bytes(hex: "00112233445566778899aabbccddeeff")
        let page = page83([
            (0x02, 0x00, Array("vendor-ascii  ".utf8)),  // vendor specific, ASCII
            (0x01, 0x00, [0xDE, 0xAD]),  // vendor specific, binary
            (0x02, 0x01, t10),  // T10 vendor ID
            (0x01, 0x02, bytes(hex: "0011223344556677")),  // EUI-64
            (0x01, 0x02, bytes(hex: "001122334455667788990011")),  // EUI-64 12 bytes
            (0x01, 0x02, bytes(hex: "00112233445566778899aabbccddeeff")),  // EUI-64 16 bytes
            (0x61, 0x94, [0, 0, 0, 2]),  // relative target port, PIV + SAS, target-port association
            (0x01, 0x95, [0, 0, 0, 7]),  // target port group
            (0x01, 0x06, [0, 0, 1, 3]),  // logical unit group
            (0x01, 0x07, bytes(hex: "0102030405060708090a0b0c0d0e0f10")),  // MD5
            (0x03, 0x28, name),  // SCSI name string, UTF-8, target device
            (0x61, 0x99, [1, 2, 3, 4]),  // protocol specific port id
            (0x01, 0x0A, uuid),  // UUID
            (0x01, 0x0F, [9]),  // reserved type
        ])
        let d = VPDPage.decodeDeviceIdentification(page)
        #expect(d.warnings.isEmpty)
        #expect(d.designators.map(\.type) == [
            .vendor, .vendor, .t10, .eui64, .eui64, .eui64, .relativePort, .portGroup, .luGroup, .md5, .scsiName,
            .protocolSpecific, .uuid, .reserved,
        ])
        #expect(d.designators[0].value == "vendor-ascii")
        #expect(d.designators[0].codeSet == .ascii)
        #expect(d.designators[1].value == "dead")
        #expect(d.designators[2].value == "VMware  Virtual disk    6000c29abc")
        #expect(d.designators[3].value == "0011223344556677")
        #expect(d.designators[6].value == "2")
        #expect(d.designators[6].association == .targetPort)
        #expect(d.designators[6].protocolIdentifier == 6)
        #expect(d.designators[7].value == "7")
        #expect(d.designators[8].value == "259")
        #expect(d.designators[10].value == "naa.6000C2912345678900AABBCCDDEEFF01")
        #expect(d.designators[10].codeSet == .utf8)
        #expect(d.designators[10].association == .targetDevice)
        #expect(d.designators[12].value == "00112233-4455-6677-8899-aabbccddeeff")
        #expect(d.designators[0].protocolIdentifier == nil)
    }

    @Test func truncatedAndGarbagePagesWarnWithoutCrashing() {
        let good = page83([(0x01, 0x03, bytes(hex: vmwareNAA)), (0x02, 0x01, Array("VMware  disk".utf8))])

        let empty = VPDPage.decodeDeviceIdentification([])
        #expect(empty.designators.isEmpty && empty.warnings.count == 1)

        let wrongPage = VPDPage.decodeDeviceIdentification([0, 0x80, 0, 4, 1, 2, 3, 4])
        #expect(wrongPage.designators.isEmpty)
        #expect(wrongPage.warnings.first?.contains("page code 0x80") == true)

        // Cut in the middle of the second descriptor: the first survives, the cut is reported.
        let cut = VPDPage.decodeDeviceIdentification(Array(good.prefix(good.count - 3)))
        #expect(cut.designators.count == 1)
        #expect(cut.designators.first?.value == vmwareNAA)
        #expect(cut.warnings.count == 2)

        // A descriptor claiming more bytes than the page holds.
        var lying = good
        lying[4 + 3] = 200
        let l = VPDPage.decodeDeviceIdentification(lying)
        #expect(l.designators.isEmpty)
        #expect(l.warnings.contains { $0.contains("declares 200 bytes") })

        // Control characters in an ASCII designator never reach a terminal.
        let hostile = VPDPage.decodeDeviceIdentification(page83([(0x02, 0x01, [0x41, 0x1B, 0x5B, 0x32, 0x4A, 0x42])]))
        #expect(hostile.designators.first?.value == "A.[2JB")

        let emptyNAA = VPDPage.decodeDeviceIdentification(page83([(0x01, 0x03, [])]))
        #expect(emptyNAA.designators.isEmpty && emptyNAA.warnings.count == 1)
    }

    @Test func randomBytesNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<96, using: &rng)
            var page = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if page.count > 1 && Bool.random(using: &rng) { page[1] = 0x83 }
            let decoded = VPDPage.decodeDeviceIdentification(page)
            // Every decoded designator came from complete bytes inside the page.
            #expect(decoded.designators.count <= max(0, (page.count - 4) / 4))
        }
    }

    @Test func unitSerialPage() {
        #expect(VPDPage.decodeUnitSerial([0, 0x80, 0, 8] + Array("6000c29a".utf8)) == "6000c29a")
        #expect(VPDPage.decodeUnitSerial([0, 0x80, 0, 6] + Array("  ab  ".utf8)) == "ab")
        #expect(VPDPage.decodeUnitSerial([0, 0x80, 0, 0]) == nil)
        #expect(VPDPage.decodeUnitSerial([0, 0x83, 0, 2, 65, 66]) == nil)
        #expect(VPDPage.decodeUnitSerial([0, 0x80, 0, 40, 65, 66]) == "AB")  // truncated: what is there
        #expect(VPDPage.decodeUnitSerial([]) == nil)
    }
}

@Suite("WWID selection", .tags(.small))
struct WWIDTests {
    func d(_ type: Designator.Kind, _ value: String, naa: Int? = nil, assoc: Designator.Association = .lun) -> Designator {
        Designator(type: type, codeSet: type == .t10 ? .ascii : .binary, association: assoc, value: value, naaFormat: naa)
    }

    @Test func prefersWhatScsiIdPrefers() {
        let naa5 = d(.naa, "5000c50012345678", naa: 5)
        let naa6 = d(.naa, vmwareNAA, naa: 6)
        let naa3 = d(.naa, "3000001122334455", naa: 3)
        let eui = d(.eui64, "0011223344556677")
        let t10 = d(.t10, "VMware  Virtual disk  abc")
        #expect(WWID.from(designators: [t10, eui, naa3, naa5, naa6]) == "3" + vmwareNAA)
        #expect(WWID.from(designators: [t10, eui, naa3, naa5]) == "35000c50012345678")
        #expect(WWID.from(designators: [t10, eui, naa3]) == "33000001122334455")
        #expect(WWID.from(designators: [t10, eui]) == "20011223344556677")
        #expect(WWID.from(designators: [t10]) == "1VMware_Virtual_disk_abc")
        #expect(WWID.from(designators: []) == nil)
    }

    @Test func ignoresPortAndTargetAssociations() {
        let port = d(.naa, "5001405000000001", naa: 5, assoc: .targetPort)
        let target = d(.naa, "5001405000000002", naa: 5, assoc: .targetDevice)
        #expect(WWID.from(designators: [port, target]) == nil)
    }

    @Test func kernelWWIDAttribute() {
        #expect(WWID.from(kernelWWID: "naa.6000C29123456789\n") == "36000c29123456789")
        #expect(WWID.from(kernelWWID: "eui.0011223344556677") == "20011223344556677")
        #expect(WWID.from(kernelWWID: "t10.ATA     QEMU HARDDISK   QM00001") == "1ATA_QEMU_HARDDISK_QM00001")
        #expect(WWID.from(kernelWWID: "nvme.1b36-3132-51454d55-00000001") == nil)
        #expect(WWID.from(kernelWWID: "naa.") == nil)
        #expect(WWID.from(kernelWWID: "") == nil)
        #expect(WWID.isVMwareVirtualDisk("36000c29123456789"))
        #expect(!WWID.isVMwareVirtualDisk("35000c50012345678"))
    }
}

extension Tag {
    @Tag static var small: Self
}
