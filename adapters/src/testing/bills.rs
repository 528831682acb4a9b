//! Statements for tests, written the way the channels write them.

use std::fmt::Write as _;

/// A WeChat `ALL` bill (current 27-column layout) of `records` payments of
/// 1.00, each of subject `subject`, dated 2026-11-22, order numbers
/// `ORDER000000000000` upwards, whose summary line states `stated` records:
/// `records` for a whole bill, any other count for one that the parser
/// reads to the end and then rejects whole.
pub fn wechat_bill_of_payments(records: usize, stated: usize, subject: &str) -> String {
    let mut text = String::from(
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n",
    );
    for n in 0..records {
        let _ = writeln!(
            text,
            "`2026-11-22 10:00:00,`wx0000000000000000,`1900000000,`,`DEVICE01,`42000000{n:021},`ORDER{n:012},`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`MICROPAY,`SUCCESS,`CMC,`CNY,`1.00,`0.00,`0,`0,`0.00,`0.00,`,`,`{subject},`attach,`0.01,`0.60%,`1.00,`0.00,`"
        );
    }
    text.push_str(
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n",
    );
    let _ = writeln!(
        text,
        "`{stated},`{records}.00,`0.00,`0.00,`{}.{:02},`{records}.00,`0.00",
        records / 100,
        records % 100
    );
    text
}
