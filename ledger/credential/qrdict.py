"""The preset deflate dictionary of CL1 presentations: general licence vocabulary.

Deflate can refer back into a *preset dictionary* as if it were text already seen, so
a phrase such as ``（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）`` costs
a few bytes instead of 60 when the dictionary holds it.

How the vocabulary was chosen
-----------------------------

Only wording that recurs across many licences, never the text of one licence:

* the business-scope catalogue's standard wording (经营范围规范表述目录): the two
  closing sentences, the headings ``一般项目：`` and ``许可项目：`` and the items most
  registrations pick, across retail and wholesale, information technology, services,
  construction, logistics, food, agriculture and general manufacturing, each followed
  by ``；`` as scopes list them; the older closing sentences still on licences issued
  before the catalogue. Specialised items (finance, nuclear, aviation, …) are left out:
  they are long but rare;
* the market-entity types as the registration system prints them (full-width
  brackets), composed from their parts, so a variant the list does not spell out still
  matches in two or three pieces;
* the standard wording of the consortium's other certificates: food business permits
  (主体业态 and 经营项目) and health certificates (从业类别);
* the province-level divisions and the largest cities, address words, registration
  authorities' names, common name endings and industry words, capital amounts as
  numerals and units (not whole amounts), and the words of operating terms;
* the English words certificate-type codes are made of, and the structure bytes every
  presentation starts with (the canonical msgpack field keys and headers).

Deflate codes a nearer match in fewer bits, so the groups run from the least to the
most frequent (as estimated: no registration statistics were at hand), the structure
bytes last (they are the first bytes of every presentation). The text is stored in
the same encoding that carries claim values (GB 18030, :mod:`ledger.credential.gbtext`), so a
value matches it byte for byte.

No term is there because one licence has it: phrases the earlier dictionary held only
because the benchmark's reference licence has them verbatim (its half-width entity
type, ``壹仟万元整``, ``数字科技有限公司``, its scope sentence) are generalised into
their parts. The held-out licences (``tests/fixtures/heldout_licences.json``) judge the
result; they were written by the same people from the same knowledge of licence
wording, so many catalogue items occur in both, and ``bench/bench_qr_variants.py``
prints how much that may flatter the figures.

The dictionary is part of the CL1 format: every reader must use exactly these bytes
(:data:`PRESET_DICTIONARY`, whose SHA-256 is :data:`PRESET_DICTIONARY_SHA256`).
Changing one byte makes existing CL1 codes unreadable, so once CL1 is deployed a new
dictionary needs a new format version. ``python -m ledger.credential.qrdict`` writes the bytes
to standard output, for readers in other languages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ledger.credential.gbtext import gb18030_form
from ledger.errors import MalformedError

__all__ = [
    "PRESET_DICTIONARY",
    "PRESET_DICTIONARY_SHA256",
    "STRUCTURE",
    "TYPE_WORDS",
    "VOCABULARY",
    "build_dictionary",
]

#: The vocabulary: groups of ``(separator, terms)``, from the least to the most
#: frequent; each term is followed by its group's separator.
VOCABULARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    # provincial-level divisions, then capitals, sub-provincial and other large cities
    (
        "",
        (
            "北京市天津市河北省山西省内蒙古自治区辽宁省吉林省黑龙江省上海市江苏省浙江省安徽省福建省"
            "江西省山东省河南省湖北省湖南省广东省广西壮族自治区海南省重庆市四川省贵州省云南省"
            "西藏自治区陕西省甘肃省青海省宁夏回族自治区新疆维吾尔自治区",
            "石家庄市太原市呼和浩特市沈阳市大连市长春市哈尔滨市南京市苏州市无锡市常州市南通市"
            "杭州市宁波市温州市嘉兴市金华市台州市绍兴市合肥市福州市厦门市泉州市南昌市济南市青岛市"
            "烟台市潍坊市郑州市洛阳市武汉市长沙市广州市深圳市佛山市东莞市珠海市中山市惠州市南宁市"
            "海口市成都市贵阳市昆明市拉萨市西安市兰州市西宁市银川市乌鲁木齐市唐山市保定市徐州市",
        ),
    ),
    # food business permits and health certificates, the consortium's other certificates
    (
        "",
        (
            "食品经营许可证食品生产许可证健康证明",
            "食品销售经营者单位食堂餐饮服务经营者（大型餐馆）（中型餐馆）（小型餐馆）（饮品店）（糕点店）",
            "预包装食品（含冷藏冷冻食品）销售；散装食品（含冷藏冷冻食品）销售；"
            "散装食品（不含冷藏冷冻食品）销售；热食类食品制售；冷食类食品制售；生食类食品制售；"
            "糕点类食品（含裱花蛋糕）制售；自制饮品制售；",
            "公共场所从业人员药品从业人员化妆品从业人员饮用水从业人员食品从业人员体检合格",
        ),
    ),
    # older closing sentences and headings, still on many licences
    (
        "",
        (
            "（依法须经批准的项目，经相关部门批准后方可开展经营活动）",
            "（依法须经批准的项目，经相关部门批准后依批准的内容开展经营活动）",
            "（涉及许可经营项目，应取得相关部门许可后方可经营）",
            "（法律、行政法规、国务院决定禁止的项目除外，限制的项目须取得许可后方可经营）",
            "一般经营项目：许可经营项目：经营范围：",
        ),
    ),
    # market-entity types, the rarer ones first
    (
        "",
        (
            "全民所有制集体所有制股份合作制联营",
            "农民专业合作社联合社",
            "特殊普通合伙企业普通合伙企业合伙企业（有限合伙）",
            "个人独资企业分支机构",
            "外商投资企业法人独资外国自然人独资台港澳法人独资港澳台投资、非独资台港澳与境内合资中外合资",
            "有限责任公司（外商投资、非独资）有限责任公司（外国法人独资）",
            "有限责任公司（国有独资）有限责任公司（国有控股）",
            "股份有限公司（上市、国有控股）股份有限公司（非上市、国有控股）",
            "其他股份有限公司（上市）其他股份有限公司（非上市）其他有限责任公司",
            "股份有限公司（上市、自然人投资或控股）股份有限公司（非上市、自然人投资或控股）",
            "有限责任公司（自然人投资或控股的法人独资）有限责任公司（非自然人投资或控股的法人独资）",
            "有限责任公司分公司（自然人投资或控股）股份有限公司分公司",
            "有限责任公司（法人独资）有限责任公司（自然人独资）",
            "个体工商户个人独资企业有限合伙企业农民专业合作社",
            "有限责任公司（自然人投资或控股）",
        ),
    ),
    # business-scope catalogue: licensed items
    (
        "；",
        (
            "劳务派遣服务",
            "职业中介活动",
            "出版物批发",
            "出版物零售",
            "理发服务",
            "生活美容服务",
            "住宿服务",
            "旅游业务",
            "建设工程设计",
            "住宅室内装饰装修",
            "房地产开发经营",
            "互联网信息服务",
            "第二类增值电信业务",
            "药品零售",
            "烟草制品零售",
            "酒类经营",
            "食品生产",
            "食品互联网销售",
            "道路货物运输（不含危险货物）",
            "建设工程施工",
            "餐饮服务",
            "食品销售",
        ),
    ),
    # business-scope catalogue: general items, the rarer ones first
    (
        "；",
        (
            "塑料制品制造",
            "家具制造",
            "服装制造",
            "机械零件、零部件加工",
            "通用设备制造（不含特种设备制造）",
            "电子元器件制造",
            "通信设备制造",
            "包装服务",
            "花卉种植",
            "谷物种植",
            "水果种植",
            "蔬菜种植",
            "牲畜销售",
            "农业机械服务",
            "农业专业及辅助性活动",
            "农副产品销售",
            "再生资源回收（除生产性废旧金属）",
            "环保咨询服务",
            "节能管理服务",
            "合同能源管理",
            "新材料技术研发",
            "体育健康服务",
            "休闲观光活动",
            "旅游开发项目策划咨询",
            "住宅水电安装维护服务",
            "家用电器安装服务",
            "机动车修理和维护",
            "汽车租赁",
            "二手车经销",
            "汽车新车销售",
            "汽车零配件批发",
            "汽车零配件零售",
            "装卸搬运",
            "国际货物运输代理",
            "国内货物运输代理",
            "普通货物仓储服务（不含危险化学品等需许可审批的项目）",
            "园林绿化工程施工",
            "土石方工程施工",
            "工程管理服务",
            "专业保洁、清洗、消毒服务",
            "停车场服务",
            "酒店管理",
            "餐饮管理",
            "票务代理服务",
            "洗染服务",
            "美甲服务",
            "养生保健服务（非医疗）",
            "健康咨询服务（不含诊疗服务）",
            "教育咨询服务（不含涉许可审批的教育培训活动）",
            "业务培训（不含教育培训、职业技能培训等需取得许可的培训）",
            "劳务服务（不含劳务派遣）",
            "人力资源服务（不含职业中介活动、劳务派遣服务）",
            "家政服务",
            "礼仪服务",
            "摄影扩印服务",
            "图文设计制作",
            "专业设计服务",
            "平面设计",
            "知识产权服务（专利代理服务除外）",
            "科技中介服务",
            "税务服务",
            "财务咨询",
            "社会经济咨询服务",
            "市场调查（不含涉外调查）",
            "企业形象策划",
            "商务代理代办服务",
            "销售代理",
            "国内贸易代理",
            "进出口代理",
            "供应链管理服务",
            "以自有资金从事投资活动",
            "自有资金投资的资产管理服务",
            "卫生用品和一次性使用医疗用品销售",
            "第一类医疗器械销售",
            "第二类医疗器械销售",
            "母婴用品销售",
            "宠物食品及用品零售",
            "礼品花卉销售",
            "珠宝首饰零售",
            "工艺美术品及礼仪用品销售（象牙及其制品除外）",
            "新鲜蔬菜零售",
            "新鲜水果零售",
            "食用农产品批发",
            "食用农产品零售",
            "仪器仪表销售",
            "机械设备租赁",
            "机械设备销售",
            "纸制品销售",
            "橡胶制品销售",
            "塑料制品销售",
            "化工产品销售（不含许可类化工产品）",
            "金属制品销售",
            "金属材料销售",
            "建筑装饰材料销售",
            "建筑材料销售",
            "家具销售",
            "家用电器销售",
            "体育用品及器材零售",
            "文具用品批发",
            "文具用品零售",
            "办公用品销售",
            "个人卫生用品销售",
            "化妆品批发",
            "化妆品零售",
            "针纺织品及原料销售",
            "针纺织品销售",
            "鞋帽批发",
            "鞋帽零售",
            "服装服饰批发",
            "服装服饰零售",
            "五金产品批发",
            "五金产品零售",
            "日用品批发",
            "日用品销售",
            "集成电路设计",
            "集成电路销售",
            "电子元器件批发",
            "电子元器件零售",
            "通讯设备销售",
            "计算机软硬件及辅助设备批发",
            "计算机软硬件及辅助设备零售",
            "大数据服务",
            "互联网数据服务",
            "物联网技术研发",
            "物联网技术服务",
            "信息系统运行维护服务",
            "网络与信息安全软件开发",
            "人工智能基础软件开发",
            "人工智能应用软件开发",
            "计算机系统服务",
            "网络技术服务",
            "数据处理服务",
            "数据处理和存储支持服务",
            "信息技术咨询服务",
            "信息咨询服务（不含许可类信息咨询服务）",
            "信息系统集成服务",
            "软件销售",
            "软件开发",
            "住房租赁",
            "非居住房地产租赁",
            "物业管理",
            "会议及展览服务",
            "组织文化艺术交流活动",
            "广告发布",
            "广告制作",
            "广告设计、代理",
            "市场营销策划",
            "企业管理咨询",
            "企业管理",
            "互联网销售（除销售需要许可的商品）",
            "电子产品销售",
            "日用百货销售",
            "技术进出口",
            "货物进出口",
            "技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广",
        ),
    ),
    # address words
    (
        "",
        (
            "自由贸易试验区综合保税区保税港区高新技术产业开发区经济技术开发区经济开发区工业园区",
            "高新区新区开发区产业园科技园软件园创业园孵化器商务中心写字楼大厦广场中心",
            "自治州自治县地区盟旗街道社区居委会村委会村组镇乡县区市省",
            "大道大街路街巷弄胡同号院号楼栋幢单元层室铺首层负一层之自编",
        ),
    ),
    # registration authorities
    (
        "",
        (
            "工商行政管理局市场和质量监督管理委员会行政审批服务局行政审批局",
            "市场监督管理局分局市场监督管理局",
        ),
    ),
    # industry words and name endings
    (
        "",
        (
            "数字信息网络智能电子生物医药新能源环保新材料文化传媒教育农业旅游物流供应链",
            "建筑装饰建设工程房地产物业餐饮酒店商贸贸易实业投资管理咨询服务机械设备汽车",
            "商行经营部门市部工作室超市便利店餐厅饭店店厂中心",
            "集团有限公司股份有限公司分公司科技有限公司有限公司",
        ),
    ),
    # capital amounts and operating terms
    (
        "",
        (
            "零壹贰叁肆伍陆柒捌玖拾佰仟万亿元整圆整",
            "万美元万港元万欧元万元人民币万人民币人民币万元整万元",
            "年月日至无固定期限永续经营长期至长期",
        ),
    ),
    # the standard closing sentences and headings of a business scope
    (
        "",
        (
            "（依法须经批准的项目，经相关部门批准后方可开展经营活动，"
            "具体经营项目以相关部门批准文件或许可证件为准）",
            "（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
            "许可项目：一般项目：",
        ),
    ),
)

#: English words of certificate-type codes (lower case, joined as codes are).
TYPE_WORDS = "business_certificate_food_health_licence_license_permit_registration_"

# Structure bytes of every presentation (canonical msgpack), the runs of three or more
# that do not depend on the certificate: the map header of a full disclosure with 12
# fields, then kind 1 and the header of the 4-byte key id; edition 1 and the header of
# a 32-bit time; the header of the 64-byte signature; that of the 16-byte secret.
STRUCTURE = bytes.fromhex("8c010102c404050106ce0cc4400ec410")


def build_dictionary(
    groups: Sequence[tuple[str, Sequence[str]]] = VOCABULARY,
    *,
    type_words: str = TYPE_WORDS,
    structure: bytes = STRUCTURE,
) -> bytes:
    """The groups' terms in GB 18030, then ``type_words`` (ASCII), then ``structure``.

    With the defaults this is :data:`PRESET_DICTIONARY`; other arguments are for
    measuring variants.
    """
    parts: list[bytes] = []
    for separator, terms in groups:
        text = "".join(term + separator for term in terms)
        data = gb18030_form(text)
        if data is None:
            raise MalformedError(
                "dictionary: every term must travel as GB 18030 (see ledger.credential.gbtext)"
            )
        parts.append(data)
    return b"".join(parts) + type_words.encode("ascii") + structure


#: The preset dictionary.
PRESET_DICTIONARY: bytes = build_dictionary()
#: Its SHA-256, which pins the CL1 format (hex).
PRESET_DICTIONARY_SHA256 = "639af0b9abab1a154521089ebd2c45411e7d0233d3a1a792ce97b978723048d9"


if __name__ == "__main__":
    sys.stdout.buffer.write(PRESET_DICTIONARY)
